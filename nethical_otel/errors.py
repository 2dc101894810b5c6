"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""


class NethicalOtelError(Exception):
    """Base of every error nethical-otel raises on purpose; the message says what to do."""


class ConfigError(NethicalOtelError):
    """A bad setting: unknown key, bad value, unreadable config file."""
