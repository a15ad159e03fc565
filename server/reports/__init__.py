"""Service-level reports: per branch and region, a day or a week, from stored data."""
