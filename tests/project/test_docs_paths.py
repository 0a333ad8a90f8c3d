"""The documentation stays true to the tree: every repository path the README and docs/ name exists,
every link between them lands on a file, the README stays a front page, and the changelog names
the version the package carries."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from app.version import __version__

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SOURCE_FOLDERS = ("app", "simulator", "tests", "bench", "tools", "docs")
FILE_SUFFIXES = (".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".in", ".html", ".png", ".example")


def documents() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".env.example"}


def repository_paths(text: str) -> set[str]:
    """Inline code outside fenced blocks that names a file or folder of this repository.

    A path with a folder counts when its first part is a top-level entry of the repository (so
    `DATA_DIR/layouts` or `/v1/jobs/{id}` are not paths here, `app/core/engine.py` is); a bare
    name counts when it is a top-level file (`render.yaml`, `Makefile`). Test ids
    (`tests/x.py::test_y`) are checked for their file.
    """
    names = top_level()
    found = set()
    for token in INLINE.findall(FENCE.sub("", text)):
        token = token.strip().split("::", 1)[0]
        if " " in token or any(c in token for c in "{}<>*$"):
            continue
        first = token.split("/", 1)[0]
        if ("/" in token and first in names) or ("/" not in token and token in names):
            found.add(token)
        elif "/" not in token and token.endswith(FILE_SUFFIXES) and token[0].isalpha() and token != "README.md":
            found.add(token)  # a bare file name that is not at the top: must exist somewhere below
    return found


def links(text: str) -> set[str]:
    return {
        target.split("#", 1)[0]
        for target in LINK.findall(FENCE.sub("", text))
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    }


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_document_names_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = []
    for path in sorted(repository_paths(text)):
        if "/" in path or (ROOT / path).exists():
            if not (ROOT / path.rstrip("/")).exists():
                missing.append(path)
        elif not any(any((ROOT / top).glob(f"**/{path}")) for top in SOURCE_FOLDERS):
            missing.append(path)
    for target in sorted(links(text)):
        if not (doc.parent / target).resolve().exists():
            missing.append(f"link {target}")
    assert not missing, f"{doc.relative_to(ROOT)} names what the repository does not hold: {missing}"


def test_the_path_check_sees_paths_and_only_paths() -> None:
    text = (
        "Read `app/core/engine.py`, `tests/test_x.py::test_y`, `Makefile` and `render.yaml`; not "
        "`DATA_DIR/layouts`, `/v1/jobs/{id}`, `python -m app serve` or `GET /health`.\n"
        "```\napp/not/checked.py\n```\n[a link](docs/api.md#the-api) and [out](https://example.com)\n"
    )
    assert repository_paths(text) == {"app/core/engine.py", "tests/test_x.py", "Makefile", "render.yaml"}
    assert links(text) == {"docs/api.md"}


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    for doc in ("api", "cli", "configuration", "operations", "performance", "architecture"):
        assert f"(docs/{doc}.md)" in "\n".join(lines), f"the README does not point to docs/{doc}.md"


def test_the_docs_use_no_internal_shorthand() -> None:
    """Readers are strangers: no issue or seed numbers, branch names or paths outside the repository."""
    shorthand = re.compile(r"\b(issue|seed)s? #?\d+|\.\./shared|\bbranch\b", re.IGNORECASE)
    for doc in documents():
        hits = [line for line in doc.read_text().splitlines() if shorthand.search(line)]
        assert not hits, f"{doc.relative_to(ROOT)}: {hits}"


def test_the_changelog_names_the_version_the_package_carries() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == __version__
    headings = re.findall(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == version, f"CHANGELOG.md starts at {headings[:1]}, the package is {version}"
