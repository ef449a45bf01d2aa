"""The one error type users see as a single line: what is wrong, where, and how to fix it."""

import sys
from typing import Callable


class ConfigError(ValueError):
    """Bad input found before any work or output: printed as one line, exit status 2."""


def exit_status(job: Callable[[], object]) -> int:
    """Run a multi-stage command: 0; bad input -> its one line and 2; a failed stage (RuntimeError,
    whose message names the stage's log) -> 1."""
    try:
        job()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
