"""The documentation's links resolve: README.md and docs/*.md are the project's front door, and a link that
points at a moved file or a renamed heading is the first thing a reader hits. Fast, no network: absolute
http(s) links are not checked. The README stays short (it links into docs/ for the details)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Set
from urllib.parse import unquote

import pytest
from support import REPO_ROOT

ROOT = REPO_ROOT
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 260

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) or ![alt](target), optionally with a "title"; the text may hold one level of brackets.
_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_ABSOLUTE = re.compile(r"^https?://", re.IGNORECASE)


class Link(NamedTuple):
    """One markdown link as written: the file it is in, its line number and its target."""

    source: Path
    line: int
    target: str


def prose_lines(text: str) -> List[tuple]:
    """``(line_number, line)`` for every line outside fenced code blocks: a ``# comment`` in a bash block is
    not a heading, and ``[x](y)`` in a Python block is not a link."""
    out = []
    fence = ""
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            continue
        if match:
            fence = match.group(1)
            continue
        out.append((number, line))
    return out


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text (code spans and links reduced to their text),
    lower-cased, with every character that is not a letter, digit, space, ``-`` or ``_`` removed and each
    space turned into ``-`` (runs are not collapsed: ``a -> b`` becomes ``a---b``)."""
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", heading)
    text = _CODE_SPAN.sub(r"\2", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every anchor GitHub gives the headings of ``path``; repeated slugs get ``-1``, ``-2``, ... as there."""
    seen: Dict[str, int] = {}
    out: Set[str] = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = slugify(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(path: Path) -> List[Link]:
    """Every link outside fenced code; inline code spans are dropped first, so `` `[a](b)` `` is no link."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        stripped = _CODE_SPAN.sub(lambda m: "" if "](" in m.group(2) else m.group(0), line)
        for match in _LINK.finditer(stripped):
            found.append(Link(path, number, match.group(2)))
    return found


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (shorter messages), else as it is."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def broken(link: Link) -> str:
    """Why ``link`` does not resolve, or ``""`` when it does (absolute http(s) links are not checked)."""
    target = link.target
    if not target or _ABSOLUTE.match(target):
        return ""
    file_part, _, anchor = target.partition("#")
    dest = (link.source.parent / unquote(file_part)).resolve() if file_part else link.source
    if not dest.exists():
        return f"{_shown(dest)} does not exist"
    if anchor:
        if dest.suffix.lower() != ".md" or dest.is_dir():
            return f"anchor #{anchor} on a file that is not markdown"
        if unquote(anchor).lower() not in anchors(dest):
            return f"no heading of {_shown(dest)} has the anchor #{anchor}"
    return ""


# --- the parser itself ----------------------------------------------------------------------------------------

def test_slugify_follows_github() -> None:
    assert slugify("Detection (detectron2): published COCO numbers -> config -> official file -> command") == \
        "detection-detectron2-published-coco-numbers---config---official-file---command"
    assert slugify("Quick start: two commands") == "quick-start-two-commands"
    assert slugify("The `MODEL.RESNEST` keys") == "the-modelresnest-keys"
    assert slugify("FLOPs and parameters (fvcore)") == "flops-and-parameters-fvcore"
    assert slugify("[torch.hub](x.md) entry_points") == "torchhub-entry_points"


def test_fenced_code_holds_no_links_or_headings(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\n```bash\n# not a heading\necho [a](missing.md)\n```\n\n"
                   "See [b](other.md#x) and `[c](in_code.md)`.\n\n## Title\n~~~\n[d](e.md)\n~~~\n",
                   encoding="utf-8")
    assert [link.target for link in links(doc)] == ["other.md#x"]
    assert anchors(doc) == {"title", "title-1"}


def test_broken_link_is_reported(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("## A heading\n[ok](#a-heading) [gone](#nowhere) [file](doc.md#a-heading) [no](nofile.md) "
                   "[web](https://example.invalid/x.md)\n", encoding="utf-8")
    reasons = {link.target: broken(link) for link in links(doc)}
    assert reasons["#a-heading"] == "" and reasons["doc.md#a-heading"] == ""
    assert reasons["https://example.invalid/x.md"] == ""
    assert "anchor #nowhere" in reasons["#nowhere"]
    assert "does not exist" in reasons["nofile.md"]


# --- the project's documentation ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    failures = [f"{link.source.name}:{link.line}: ({link.target}) {reason}"
                for link in links(path) if (reason := broken(link))]
    assert not failures, "broken links:\n" + "\n".join(failures)


def test_docs_have_links() -> None:
    """The README is a front door: it links into every file of docs/ (so none is orphaned)."""
    targets = {(ROOT / link.target.partition("#")[0]).resolve() for link in links(ROOT / "README.md")
               if link.target and not _ABSOLUTE.match(link.target) and link.target.partition("#")[0]}
    orphans = [p.name for p in DOC_FILES[1:] if p.resolve() not in targets]
    assert not orphans, f"docs/ files the README does not link to: {orphans}"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}); move details to docs/"


# --- no dead download hosts -----------------------------------------------------------------------------------

#: Hosts that once served ResNeSt files and now answer 403 (docs/reference.md section 4): the authors' Wasabi bucket
#: (the detectron2 zoo, the detectron2-format ImageNet files, PyTorch-Encoding's model store) and its predecessor.
DEAD_HOSTS = ("s3.us-west-1.wasabisys.com", "hangzh.s3.amazonaws.com")
#: Where a URL must not send anyone: the front door, the docs, the configs, and what the code prints.
_SCANNED = [*DOC_FILES, *sorted((ROOT / "configs").rglob("*.py")), *sorted((ROOT / "configs").rglob("*.yaml")),
            *sorted((ROOT / "resnest_backbones").rglob("*.py")), *sorted((ROOT / "tools").rglob("*.py")),
            ROOT / "hubconf.py"]
# A URL whose host is (a subdomain of) a dead host; the host named as text, without a scheme, is no URL.
_DEAD_URL = re.compile(r"[a-z][a-z0-9+.-]*://(?:[^/\s\"'`)]*\.)?(?:" + "|".join(map(re.escape, DEAD_HOSTS)) + ")",
                       re.IGNORECASE)


def dead_urls(path: Path) -> List[str]:
    """``file:line: url`` for every URL of ``path`` (fenced code included) that points at a dead host."""
    return [f"{_shown(path)}:{number}: {match.group(0)}"
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
            for match in _DEAD_URL.finditer(line)]


def test_dead_url_is_found(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("[zoo](https://s3.us-west-1.wasabisys.com/resnest/detectron/x.pth)\n"
                   "```\nMODEL.WEIGHTS http://hangzh.s3.amazonaws.com/encoding/models/y.zip\n```\n"
                   "the bucket `s3.us-west-1.wasabisys.com` answers 403; https://github.com/x is served\n",
                   encoding="utf-8")
    assert [entry.rsplit(": ", 1)[1] for entry in dead_urls(doc)] == [
        "https://s3.us-west-1.wasabisys.com", "http://hangzh.s3.amazonaws.com"]


def test_no_url_points_at_a_dead_host() -> None:
    assert len(_SCANNED) > len(DOC_FILES)  # the configs and the code are scanned too
    found = [entry for path in _SCANNED for entry in dead_urls(path)]
    assert not found, ("URLs of hosts that no longer serve the files (name the host as text, e.g. in backticks, "
                       "and point to the served file; docs/model_zoo.md lists where each one is served):\n"
                       + "\n".join(found))
