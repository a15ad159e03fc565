"""MQTT ingest: receive, validate, de-duplicate, store, evaluate rules, acknowledge."""
