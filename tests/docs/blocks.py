"""Finding the code blocks of the documentation, and what each one's marker asks for.

A marker is an HTML comment on the last non-blank line before a fenced block::

    <!-- test: run -->
    ```sh
    python manage.py stepup validate
    ```

See ``tests/docs/test_docs.py`` for what each marker means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXCLUDED = {
    "docs/architecture.md": "the lead's design notes: interface signatures, not runnable samples",
}
"""Markdown files not held to the conventions, and why."""

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^<!--\s*test:\s*(?P<kind>[a-z-]+)(?:\s+(?P<arg>.*?))?\s*-->$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository root
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # "run", "dry-run", … or None when unmarked
    arg: str  # the rest of the marker ("" when none)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}:{self.lang or 'text'}"


def doc_files() -> list[str]:
    """The Markdown files under test: the README, the changelog, SECURITY.md, DEVELOPERS.md and docs/."""
    found = [p for p in ("README.md", "CHANGELOG.md", "SECURITY.md", "DEVELOPERS.md") if (ROOT / p).exists()]
    for path in sorted((ROOT / "docs").rglob("*.md")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith("docs/briefs/") and rel not in EXCLUDED:
            found.append(rel)
    return found


def blocks_of(rel: str) -> list[Block]:
    """Every fenced block of the file, in order, with its marker."""
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, lang = opening["fence"], opening["info"].strip().split(" ")[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"{rel}:{i + 1}: the code block is never closed")
        marker, arg = _marker_before(lines, i)
        blocks.append(Block(rel, i + 1, lang, "\n".join(body) + "\n", marker, arg))
        i = j + 1
    return blocks


def _marker_before(lines: list[str], fence_index: int) -> tuple[str | None, str]:
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0:
        return None, ""
    found = _MARKER.match(lines[k].strip())
    if found is None:
        return None, ""
    return found["kind"], (found["arg"] or "").strip()


def all_blocks() -> list[Block]:
    return [block for rel in doc_files() for block in blocks_of(rel)]


# --- shell lines ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command of a shell block: the text to run and the exit code the docs promise."""

    text: str
    exit_code: int
    line: int


_EXIT_NOTE = re.compile(r"^exit (\d+)\b")


def commands_of(block: Block) -> list[Command]:
    """The commands of a shell block: continuations joined, comments split off.

    A trailing comment that starts with ``exit N`` (``# exit 2: changes``)
    declares the exit code the command must return; otherwise it must be 0.
    """
    commands: list[Command] = []
    pending = ""
    start = 0
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        if not pending:
            start = block.line + offset
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        code, comment = split_comment(pending + line)
        pending = ""
        if not code.strip():
            continue
        note = _EXIT_NOTE.match(comment)
        commands.append(Command(code.strip(), int(note[1]) if note else 0, start))
    return commands


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)``: the comment starts at a ``#`` outside quotes after whitespace."""
    quote: str | None = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1 :].strip()
    return line, ""
