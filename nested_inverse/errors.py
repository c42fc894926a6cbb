"""The one error type of the application layer."""

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A mistake in what the caller asked for: the message names the Python argument, the value
    received and what is accepted (the command line shows it in one line, naming its flag)."""
