"""The LobbyWatch edge agent: counts people in queue zones, reports call buttons and facility sensors."""

__version__ = "0.1.0"
