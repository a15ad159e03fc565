"""Backups of what a server cannot rebuild: the registry database and the broker's device identities."""
