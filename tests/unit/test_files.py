"""Users' files: modes of what we write, outputs checked before use, one-line read errors."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from nethical_otel.errors import NethicalOtelError
from nethical_otel.files import check_writable, read_json, read_text, read_yaml, write_atomic


@pytest.fixture
def umask():
    """``umask(value)`` for the test; the previous umask is restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_usual_mode(tmp_path: Path, umask, mask: int, expected: int) -> None:
    umask(mask)
    write_atomic(tmp_path / "new.txt", "x")
    write_atomic(tmp_path / "sub" / "new.bin", b"x")
    assert _mode(tmp_path / "new.txt") == expected
    assert _mode(tmp_path / "sub" / "new.bin") == expected


@pytest.mark.parametrize("mode", [0o640, 0o755, 0o600, 0o444])
def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask, mode: int) -> None:
    umask(0o022)
    path = tmp_path / "kept.txt"
    path.write_text("old")
    path.chmod(mode)
    write_atomic(path, "new")
    assert path.read_text() == "new" and _mode(path) == mode


def test_a_symbolic_link_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("old")
    (tmp_path / "real.csv").chmod(0o640)
    (tmp_path / "link.csv").symlink_to("real.csv")
    write_atomic(tmp_path / "link.csv", "new")
    assert (tmp_path / "link.csv").is_symlink() and (tmp_path / "real.csv").read_text() == "new"
    assert _mode(tmp_path / "real.csv") == 0o640


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.txt", "x")
    write_atomic(tmp_path / "a.txt", "y")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_fifo_or_directory_is_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    for path, kind in ((fifo, "not a regular file"), (tmp_path / "dir", "is a directory")):
        with pytest.raises(NethicalOtelError, match=kind):
            write_atomic(path, "x")
        with pytest.raises(NethicalOtelError, match=kind):
            check_writable(path)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and (tmp_path / "dir").is_dir()


def test_check_writable_names_the_file_under_a_file_and_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NethicalOtelError) as info:
        check_writable(tmp_path / "file.txt" / "a" / "out.csv")
    under = tmp_path / "file.txt"
    assert str(info.value) == f"{under}/a/out.csv: cannot write: {under} is not a directory"
    assert check_writable(tmp_path / "new" / "dir" / "out.csv") == tmp_path / "new" / "dir" / "out.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"], "no directory, no probe left"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux /proc")
def test_check_writable_where_no_file_can_be_created() -> None:
    with pytest.raises(NethicalOtelError, match=r"^/proc/nethical-otel-test/o\.csv: cannot write in /proc: "):
        check_writable("/proc/nethical-otel-test/o.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file; expected a thing (JSON)"),
        (b"\xff\xfe\x00", "not UTF-8 text (byte 0); expected a thing (JSON)"),
        (b'{"a": [1, 2', "line 1 column 12: not valid JSON (truncated?)"),
        (b"[" * 100_000, "not valid JSON: maximum recursion depth exceeded"),
        (b"1" * 5000, "not valid JSON: Exceeds the limit (4300 digits)"),
    ],
)
def test_read_json_errors_are_one_line_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(NethicalOtelError) as info:
        read_json(path, "thing (JSON)")
    assert str(info.value).startswith(f"{path}") and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: \x00\n", "not valid YAML: special characters are not allowed"),
        (b"a: b: c\n", "line 1: not valid YAML: mapping values are not allowed here"),
        (b"[" * 100_000, "not valid YAML: maximum recursion depth exceeded"),
    ],
)
def test_read_yaml_errors_are_one_line_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_bytes(content)
    with pytest.raises(NethicalOtelError) as info:
        read_yaml(path, "thing (YAML)")
    assert str(info.value).startswith(f"{path}") and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_read_text_missing_directory_and_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    for path, message in (
        (tmp_path / "nope.csv", "no such file"),
        (tmp_path, "is a directory, expected a thing"),
        (tmp_path / "file.txt" / "x.csv", "cannot read: Not a directory"),
    ):
        with pytest.raises(NethicalOtelError, match=f"^{re.escape(str(path))}: {message}"):
            read_text(path, "thing")
