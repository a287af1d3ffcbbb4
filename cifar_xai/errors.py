"""One-line errors for users: bad input is reported, never dumped as a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A problem the user can fix; its message names the problem and what to do."""


class NotFound(UserError):
    """Something asked for by name (a run, an image, an upload, a page) that is not there."""


class Busy(UserError):
    """The server is doing as much of this as it may at once; the same request later will work."""


class Pending(UserError):
    """A long job is running for this request; asking again later gets its result."""


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run an entry point, turning `UserError` and Ctrl-C into one line on stderr."""
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
