"""The pages people use in a browser: the lobby's alerts for supervisors and managers (server-rendered)."""
