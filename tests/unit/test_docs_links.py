"""The README and docs/ stay true to the tree: every relative link and anchor resolves, every `make`
target and `socialcard` command they show exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from app.cli import parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The page without its code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _code(text: str) -> list[str]:
    return FENCE.findall(text) + INLINE_CODE.findall(FENCE.sub("", text))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall(_prose(page.read_text()))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_the_readme_links_every_doc() -> None:
    readme = ROOT / "README.md"
    linked = {(readme.parent / target.partition("#")[0]).resolve() for page, target in _links() if page == readme}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_every_make_target_shown_exists() -> None:
    targets = _make_targets()
    shown = {
        t for page in PAGES for code in _code(page.read_text()) for t in re.findall(r"\bmake ([a-z][a-z-]*)", code)
    }
    assert shown, "no make command found: the pattern is wrong"
    assert sorted(shown - targets) == []


def _commands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_socialcard_command_shown_exists() -> None:
    root = _commands(parser())
    unknown = []
    shown = 0
    for page in PAGES:
        for code in _code(page.read_text()):
            for words in re.findall(r"\bsocialcard((?: [a-z][a-z-]*){1,2})", code):
                shown += 1
                first, *rest = words.split()
                if first not in root:
                    unknown.append(f"socialcard {first}")
                    continue
                sub = _commands(root[first])
                if sub and (not rest or rest[0] not in sub):
                    unknown.append(f"socialcard{words}")
    assert shown, "no socialcard command found: the pattern is wrong"
    assert sorted(set(unknown)) == []
