"""Getting messages to the server and nothing lost: the durable outbox, the MQTT uplink, reconnect backoff."""
