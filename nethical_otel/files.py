"""Writing files so that nothing is ever half-written or lost."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8, or bytes) to ``path``: readers see the old file or
    the whole new one.

    Via a temp file in the same directory, fsync and a rename: a crash (or an exception)
    mid-write leaves no partial ``path`` and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = (
            {"mode": "wb"}
            if isinstance(content, bytes)
            else {"mode": "w", "encoding": "utf-8", "newline": ""}
        )
        with os.fdopen(fd, **mode) as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
