"""What the edge agent and the server share: the wire contract and the message catalogs."""
