# Copyright 2026 qvla_ros authors. Apache-2.0.
"""How both CLIs end on failure: one line naming the command and the problem, exit 2.

A traceback helps the developer of the code, not the user of a file: with
``QVLA_TRACEBACK=1`` in the environment the exception is raised as it is.
"""

import os
import sys
from typing import Callable

# Errors whose text already says what was expected (ours, and the OS naming the path).
EXPECTED = (ValueError, RuntimeError, OSError)


def one_line(err: BaseException) -> str:
    """Return the first line of ``err``'s text, prefixed with its type where that helps."""
    text = (str(err).strip().splitlines() or [''])[0]
    if isinstance(err, EXPECTED) and text:
        return text
    return f'{type(err).__name__}: {text}' if text else type(err).__name__


def run(prog: str, command: str, func: Callable[[], int]) -> int:
    """Return ``func()``; any exception becomes one line on stderr and exit code 2."""
    try:
        return func()
    except KeyboardInterrupt:
        print(f'{prog} {command}: interrupted', file=sys.stderr)
        return 130
    except Exception as err:  # noqa: B902 - the user gets one line, whatever went wrong
        if os.environ.get('QVLA_TRACEBACK'):
            raise
        print(f'{prog} {command}: error: {one_line(err)}', file=sys.stderr)
        return 2
