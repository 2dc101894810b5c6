"""Users' files: read with one clear error, written so that nothing is ever half-written or lost.

Every error here is a ``NethicalOtelError`` (or the caller's subclass) whose message starts with
the path and says what is wrong, so the CLI prints it as one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from nethical_otel.errors import NethicalOtelError

# -- reading ---------------------------------------------------------------------------------


def read_text(
    path: str | os.PathLike[str], what: str, error: type[NethicalOtelError] = NethicalOtelError
) -> str:
    """The text of the user's file ``path`` (UTF-8, a BOM allowed); ``what`` names what it should be
    ("results file"). Raises ``error`` naming the file for a missing, unreadable or binary file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start}); expected a {what}") from None


def read_json(
    path: str | os.PathLike[str], what: str, error: type[NethicalOtelError] = NethicalOtelError
) -> Any:
    """The JSON document in ``path`` (as ``read_text``); invalid JSON is ``error`` naming the line."""
    text = read_text(path, what, error)
    if not text.strip():
        raise error(f"{path}: empty file; expected a {what}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        truncated = " (truncated?)" if exc.pos >= len(text.rstrip()) else ""
        raise error(
            f"{path}, line {exc.lineno} column {exc.colno}: not valid JSON{truncated}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits; nesting 100,000 deep
        raise error(f"{path}: not valid JSON: {exc}") from None


def read_versioned_json(
    path: str | os.PathLike[str],
    what: str,
    fmt: str,
    version: int,
    rerun: str,
    error: type[NethicalOtelError] = NethicalOtelError,
) -> dict[str, Any]:
    """A JSON object of ours, ``{"format": fmt, "version": version, ...}``; ``error`` naming the
    file and field otherwise (``rerun``: what makes a file this release reads)."""
    document = read_json(path, what, error)
    if not isinstance(document, dict):
        raise error(f"{path}: expected a JSON object, got {type(document).__name__}")
    if document.get("format") != fmt:
        raise error(f"{path}: field 'format' is {document.get('format')!r}, expected {fmt!r}")
    if document.get("version") != version:
        raise error(
            f"{path}: field 'version' is {document.get('version')!r}; this nethical-otel reads version "
            f"{version} ({rerun} with this release)"
        )
    return document


def read_yaml(
    path: str | os.PathLike[str], what: str, error: type[NethicalOtelError] = NethicalOtelError
) -> Any:
    """The YAML (or JSON) document in ``path`` (as ``read_text``); invalid YAML is ``error``
    naming the line."""
    import yaml

    text = read_text(path, what, error)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        raise error(f"{path}{where}: not valid YAML: {' '.join(str(problem).split())}") from None
    except (ValueError, RecursionError) as exc:  # an integer of 5,000 digits; nesting 100,000 deep
        raise error(f"{path}: not valid YAML: {exc}") from None


# -- writing ---------------------------------------------------------------------------------


def check_writable(path: str | os.PathLike[str]) -> Path:
    """``path``, once it is sure ``write_atomic(path, ...)`` can create it: it is no directory or
    device, and its directory exists or can be created, and takes a new file.

    For commands to call before a long run, so that a bad output path is a one-line error
    up front, not a lost run. Creates nothing (a probe file is made and removed).
    """
    path = Path(path)
    try:
        _existing_mode(path)
        directory = _existing_ancestor(path)
    except OSError as exc:
        raise NethicalOtelError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".nethical-otel-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NethicalOtelError(f"{path}: cannot write in {directory}: {exc.strerror or exc}") from None
    return path


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8, or bytes) to ``path``: readers see the old file or
    the whole new one.

    Via a temp file in the same directory, fsync and a rename: a crash (or an exception)
    mid-write leaves no partial ``path`` and no temporary file. A new file gets the usual mode
    (0666 less the umask); a file replaced keeps its mode. A symbolic link is written through.
    Errors are a ``NethicalOtelError`` naming ``path``.
    """
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = _existing_mode(path)
        _existing_ancestor(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as exc:
        raise NethicalOtelError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        kind = (
            {"mode": "wb"}
            if isinstance(content, bytes)
            else {"mode": "w", "encoding": "utf-8", "newline": ""}
        )
        with os.fdopen(fd, **kind) as out:
            if mode is not None:
                os.fchmod(out.fileno(), mode)
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise NethicalOtelError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise


def _existing_mode(path: Path) -> int | None:
    """The permission bits of the regular file at ``path``; None when there is none."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # new, or under a file (said by the caller)
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise NethicalOtelError(f"{path}: is {kind}; give a file path to write")
    return stat.S_IMODE(st.st_mode)


def _existing_ancestor(path: Path) -> Path:
    """The nearest directory above ``path`` that exists (``path``'s own, or where it would go)."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NethicalOtelError(f"{path}: cannot write: {ancestor} is not a directory")
    return ancestor


def _create_temp(path: Path) -> tuple[int, str]:
    """A new empty file beside ``path``, created with mode 0666 so that the kernel applies the
    umask (``tempfile.mkstemp`` would make it 0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")
