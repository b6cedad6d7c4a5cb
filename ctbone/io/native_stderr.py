"""Messages that C, C++ and Rust libraries print straight to the process's standard error, held back.

MetaIO (SimpleITK's MetaImage reader) prints its parse errors to std::cerr before ITK raises, and a Rust
decoder (pylibjpeg-rle) prints a panic backtrace before Python sees the exception: a bad file would cost the
user a screenful besides ctbone's one-line error. Reads that call such libraries run inside
`native_stderr_held`; what was printed is handed to the caller, whose error message can quote it, and logged at
INFO (``--verbose``) when the block ends without an error.

The redirection is of file descriptor 2, which is the whole process's: one block at a time (a lock), entered
by the thread that starts the reading threads, never by them.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
_LOCK = threading.RLock()  # re-entrant: a nested block (same thread) redirects again and restores in order


@contextmanager
def native_stderr_held(what: str = "") -> Iterator[list[str]]:
    """Hold back what native code writes to standard error inside the block; the yielded list gets it as one
    whitespace-normalised string when the block ends (empty string: nothing was printed)."""
    said: list[str] = []
    with _LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no stderr (closed descriptor, a daemon): nothing to hold
            said.append("")
            yield said
            return
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                held.seek(0)
                said.append(" ".join(held.read().decode("utf-8", "replace").split()))
    if said[0]:
        log.info("%s: the reading libraries printed: %s", what or "reading", said[0][:2000])
