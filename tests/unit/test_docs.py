"""The docs point at things that exist.

- Every relative link in README.md and docs/**/*.md resolves to a file in the repository,
  and a ``#fragment`` to a heading of that file (GitHub's anchor rules); so does every absolute
  link into this repository's main branch (``<PROJECT_URL>/blob/main/<file>``, ``/tree/main/<dir>``).
- README.md is also the PyPI page, where relative links break: its links are all absolute (or
  anchors in the page itself).
- Every ``nethical-otel <command> [<subcommand>]`` shown as code in them is a command of the
  CLI: ``nethical-otel <command> [<subcommand>] --help`` exits 0 (in-process through the same
  click group ``python -m nethical_otel.cli`` runs, which itself is run once for real).
- Every ``make <target>`` shown is a Makefile target, and every ``python <dir>/<file>.py`` a
  file of the repository.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nethical_otel.cli import main
from nethical_otel.names import PROJECT_URL

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_REPOSITORY = re.compile(rf"^{re.escape(PROJECT_URL)}/(blob|tree)/main/([^#]*)(?:#(.*))?$")
_COMMENT = re.compile(r"(^|\s)#\s.*$")  # a shell or Python comment: prose, not a command
_WORD = re.compile(r"^[a-z][a-z0-9-]*$")
# `nethical-otel` as a program name, not part of a path, image or namespace name.
_PROGRAM = re.compile(r"(?<![\w./-])nethical-otel(?![\w./:-])")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _prose(text: str) -> str:
    """The markdown without fenced code blocks and inline code (links there are not links)."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _code(text: str) -> list[str]:
    """Lines of code, comments cut: fenced blocks, inline code spans and 4-space indented lines."""
    fenced = [m.group(0) for m in _FENCE.finditer(text)]
    rest = _FENCE.sub("", text)
    inline = [m.group(2) for m in _INLINE_CODE.finditer(rest)]
    indented = [line for line in _INLINE_CODE.sub("", rest).splitlines() if line.startswith("    ")]
    lines = [line for chunk in (*fenced, *inline, *indented) for line in chunk.splitlines()]
    return [_COMMENT.sub("", line) for line in lines]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, spaces -> -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links render as their text
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for match in _HEADING.finditer(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path: Path) -> list[str]:
    prose = _prose(path.read_text(encoding="utf-8"))
    return [m.group(1) for m in _LINK.finditer(prose)] + [m.group(1) for m in _REFERENCE.finditer(prose)]


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_links_into_the_repository_resolve(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        into_repository = _REPOSITORY.match(target)
        if into_repository:
            kind, file_part, fragment = into_repository.groups()
            resolved = (ROOT / file_part).resolve()
            if resolved.exists() and resolved.is_dir() != (kind == "tree"):
                broken.append(f"{target} (a {'directory' if resolved.is_dir() else 'file'}: use /"
                              f"{'tree' if resolved.is_dir() else 'blob'}/)")
                continue
        elif _SCHEME.match(target):
            continue  # http:, https:, mailto: outside this repository
        else:
            file_part, _, fragment = target.partition("#")
            resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target} (no {resolved})")
            continue
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
            broken.append(f"{target} (no heading #{fragment} in {_rel(resolved)})")
    assert not broken, f"{_rel(doc)}: broken links: {broken}"


def test_readme_links_are_absolute() -> None:
    """README.md is the package's PyPI description, where a link relative to the repository
    leads nowhere: every link is absolute or an anchor in the page."""
    relative = [t for t in _links(ROOT / "README.md") if not (_SCHEME.match(t) or t.startswith("#"))]
    assert not relative, f"README.md: make these {PROJECT_URL}/blob/main/... links: {relative}"


def _mentioned_commands() -> dict[tuple[str, ...], set[str]]:
    """(command, [subcommand]) shown in code in the docs -> the docs showing it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for doc in DOCS:
        for line in _code(doc.read_text(encoding="utf-8")):
            for match in _PROGRAM.finditer(line):
                before = line[: match.start()].split()
                if before and before[-1] in ("-n", "--namespace"):  # kubectl -n nethical-otel
                    continue
                words = line[match.end() :].split()
                if not words or not _WORD.match(words[0]):
                    continue  # `nethical-otel --help`, `nethical-otel ...`, a bare name
                path: tuple[str, ...] = (words[0],)
                command = main.get_command(click.Context(main), words[0])  # loads lazy commands
                if isinstance(command, click.Group) and len(words) > 1 and _WORD.match(words[1]):
                    path = (words[0], words[1])
                found.setdefault(path, set()).add(_rel(doc))
    return found


def test_docs_show_commands() -> None:
    """The scan itself works: the README shows the CLI at a glance."""
    mentioned = _mentioned_commands()
    assert {("load",), ("compare",), ("agent",)} <= set(mentioned), sorted(mentioned)


@pytest.mark.parametrize("path", sorted(_mentioned_commands()), ids=" ".join)
def test_mentioned_command_exists(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="nethical-otel")
    where = ", ".join(sorted(_mentioned_commands()[path]))
    assert result.exit_code == 0, f"`nethical-otel {' '.join(path)}` (in {where}): {result.output}"


def test_cli_module_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nethical_otel.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for name in {path[0] for path in _mentioned_commands()}:
        listed = re.search(rf"^  {re.escape(name)}\s", result.stdout, re.MULTILINE)
        assert listed, f"`nethical-otel {name}` is not in `python -m nethical_otel.cli --help`"


def test_make_targets_and_scripts_exist() -> None:
    targets = set(re.findall(r"^([\w.-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    missing = []
    for doc in DOCS:
        for line in _code(doc.read_text(encoding="utf-8")):
            for target in re.findall(r"(?<![\w-])make ([a-z][\w-]*)", line):
                if target not in targets:
                    missing.append(f"{_rel(doc)}: make {target}")
            for script in re.findall(r"(?<![\w-])python3? ((?:[\w.-]+/)+[\w.-]+\.py)\b", line):
                if not (ROOT / script).is_file():
                    missing.append(f"{_rel(doc)}: python {script}")
    assert not missing, missing
