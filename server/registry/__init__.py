"""The registry of regions, branches, zones and devices, and the alerts raised on them (SQLAlchemy 2)."""
