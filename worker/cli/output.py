"""Printing for the commands that run syncs: a reader that goes away (`| head`) stops the output,
never the sync, so the exit code still says how the sync ended."""

from __future__ import annotations

import os
import sys


def say(*parts: object, error: bool = False) -> None:
    """`print` to stdout (stderr with `error`); on a broken pipe, the rest of that stream is dropped."""
    stream = sys.stderr if error else sys.stdout
    try:
        print(*parts, file=stream, flush=True)
    except BrokenPipeError:
        # Point the descriptor at /dev/null: later writes, and the flush at exit, go nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
