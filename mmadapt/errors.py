"""The one error type users see as a single line: what is wrong, where, and how to fix it."""


class ConfigError(ValueError):
    """Bad input found before any work or output: printed as one line, exit status 2."""
