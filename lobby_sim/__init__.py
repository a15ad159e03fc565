"""Simulated branches for the demo and the tests: lobbies with queues, cameras that film them, an embedded broker."""
