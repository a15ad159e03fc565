"""The LobbyWatch server: MQTT ingest, time-series storage, alert rules and the HTTP API."""

__version__ = "0.1.0"
