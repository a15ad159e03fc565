"""Time-series storage behind one small interface: SQLite (embedded default) or InfluxDB 2."""
