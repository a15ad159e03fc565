"""Getting an alert's notice to people: who (roles, quiet hours, hourly limits), how (grouped, with a one-tap
link) and through which channels (the log, a webhook, Apprise to phones), retried and recorded."""
