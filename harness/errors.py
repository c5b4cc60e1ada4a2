"""The one exception type for bad input: the CLI prints its message on one line and exits 2."""


class UsageError(Exception):
    """Bad input or configuration from the user (exit code 2, no traceback)."""
