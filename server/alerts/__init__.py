"""Alerts: their storage and lifecycle, and delivery to people."""
