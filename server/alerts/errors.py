"""What the alerts refuse of people."""


class AlertError(ValueError):
    """A person's action that cannot be done (resolved already, unknown alert); the message says why."""
