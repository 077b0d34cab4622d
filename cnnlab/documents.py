"""Markdown documents that several commands write (BENCHMARKS.md, REPRODUCTION.md), each command its own section.

A command rewrites only the section it owns, between HTML-comment markers, so rerunning one benchmark or the
reproduction leaves what the others measured in place.
"""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str, header: str) -> None:
    """Replaces section ``name`` of ``path`` (or appends it; a new file starts with ``header``)."""
    begin, end = f"<!-- section: {name} -->", f"<!-- end of section: {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    current = path.read_text() if path.exists() else header
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1]
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated)
