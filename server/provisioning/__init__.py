"""Devices from a blank SD card to reporting: enrollment by claim, broker identities, revocation."""
