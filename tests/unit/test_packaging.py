"""What `pip install nethical-otel` gets, and what its PyPI page shows.

The wheel and the sdist are built as a PEP 517 frontend builds them: in a fresh environment
holding only the build-system requirements of pyproject.toml, from a copy of the package's
files (the work tree stays clean). Then:

- the wheel ships LICENSE (the Apache License 2.0 text `license = "Apache-2.0"` names) and
  ``nethical_otel/py.typed`` (PEP 561: users' type checkers read our hints); the sdist both too;
- the metadata names the license by its SPDX expression, carries the classifiers (every one a
  real trove classifier, as PyPI demands) and the project URLs;
- the long description is README.md as markdown, and none of its links is relative: PyPI
  has no repository to resolve them against.
"""

from __future__ import annotations

import email.parser
import json
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from nethical_otel.names import DOCS_URL, PROJECT_URL

ROOT = Path(__file__).parents[2]
CLASSIFIERS = {
    "Development Status :: 4 - Beta",
    "Operating System :: POSIX :: Linux",
    "Operating System :: MacOS",
    *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 14)),
    "Topic :: System :: Monitoring",
    "Typing :: Typed",
}
URLS = {
    "Homepage": PROJECT_URL,
    "Documentation": f"{DOCS_URL}/index.md",
    "Source": PROJECT_URL,
    "Issues": f"{PROJECT_URL}/issues",
}
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?")

pytestmark = pytest.mark.slow  # a fresh environment from the package index: about 10 s


def _build_requirements() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r"^\[build-system\]\s*\nrequires = (\[.*?\])", text, re.MULTILINE | re.DOTALL)
    assert match, "pyproject.toml has no [build-system] requires"
    return json.loads(match.group(1))


def _run(*args: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"wheel": ..., "sdist": ..., "python": the build environment's interpreter}."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "nethical_otel", source / "nethical_otel",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = tmp / "env"
    _run(sys.executable, "-m", "venv", env, cwd=tmp)
    python = env / "bin" / "python"
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = subprocess.run([*map(str, pip), *_build_requirements(), "trove-classifiers"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"cannot install the build requirements (no package index?): {done.stderr[-2000:]}",
                    pytrace=False)
    dist = tmp / "dist"
    _run(python, "-c", (
        # build_meta rewrites sys.argv: read the directory first.
        "import sys; out = sys.argv[1]; from setuptools import build_meta as b; "
        "b.build_sdist(out); b.build_wheel(out)"
    ), dist, cwd=source)
    [sdist], [wheel] = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    return {"wheel": wheel, "sdist": sdist, "python": python}


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


def test_wheel_ships_the_license_and_py_typed(built: dict[str, Path]) -> None:
    with zipfile.ZipFile(built["wheel"]) as archive:
        files = archive.namelist()
        [license_file] = [n for n in files if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert "nethical_otel/py.typed" in files
    assert "nethical_otel/names.py" in files


def test_sdist_ships_the_license_and_py_typed(built: dict[str, Path]) -> None:
    with tarfile.open(built["sdist"]) as archive:
        files = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "pyproject.toml", "nethical_otel/py.typed", "PKG-INFO"} <= files


def test_license_file_is_the_apache_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)


def test_metadata_license_classifiers_and_urls(built: dict[str, Path]) -> None:
    metadata = _metadata(built["wheel"])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    classifiers = set(metadata.get_all("Classifier"))
    assert classifiers >= CLASSIFIERS
    assert not any(c.startswith("Operating System :: Microsoft") for c in classifiers)  # not tested there
    known = _run(built["python"], "-c", "import trove_classifiers as t; print('\\n'.join(t.classifiers))",
                 cwd=built["wheel"].parent).splitlines()
    assert not classifiers - set(known), f"unknown to PyPI: {sorted(classifiers - set(known))}"
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL"))
    assert urls == URLS
    assert metadata["Requires-Python"] == ">=3.10"


def test_long_description_is_the_readme_with_absolute_links(built: dict[str, Path]) -> None:
    metadata = _metadata(built["wheel"])
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert description.strip() == (ROOT / "README.md").read_text(encoding="utf-8").strip()
    links = _LINK.findall(description)
    assert links, "no link found: the check would prove nothing"
    relative = [link for link in links if not re.match(r"^(https?:|mailto:|#)", link)]
    assert not relative, f"relative links break on PyPI: {relative}"
