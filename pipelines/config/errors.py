"""The one error type of configuration problems."""


class ConfigError(ValueError):
    """A bad configuration; the message names the key path and, where it can, the allowed values."""
