"""Markdown documents that several commands write (BENCHMARKS.md, REPRODUCTION.md), each command its own section.

A command rewrites only the section it owns, between HTML-comment markers, so rerunning one benchmark or the
reproduction leaves what the others measured in place. A section may carry one ``**Summary:**`` line; the document
then opens with a reader's summary gathered from those lines, per machine kind, rewritten with every section.
"""

from __future__ import annotations

import re
from pathlib import Path

SUMMARY = "summary"


def write_section(path: Path, name: str, text: str, header: str) -> None:
    """Replaces section ``name`` of ``path`` (or appends it; a new file starts with ``header``), then the summary."""
    current = path.read_text() if path.exists() else header
    updated = _replace(current, name, text)
    if name != SUMMARY and "**Summary:**" in updated:
        updated = _with_summary(updated)
    path.write_text(updated)


def _replace(current: str, name: str, text: str) -> str:
    begin, end = f"<!-- section: {name} -->", f"<!-- end of section: {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if name == SUMMARY and "<!-- section: " in current:  # the summary opens the document, before every section
        head, rest = current.split("<!-- section: ", 1)
        return head.rstrip() + "\n\n" + block + "\n\n<!-- section: " + rest
    return current.rstrip() + "\n\n" + block + "\n"


def sections(text: str) -> dict[str, str]:
    """Every section of a document by name, in order."""
    return dict(re.findall(r"<!-- section: (.+?) -->\n(.*?)\n<!-- end of section: \1 -->", text, re.S))


def summary_text(text: str) -> str:
    """The reader's summary: each section's ``**Summary:**`` line under its title, grouped by machine kind (the part
    of a section's name after `` / ``)."""
    kinds: dict[str, list[str]] = {}
    for name, body in sections(text).items():
        found = re.search(r"^\*\*Summary:\*\* (.+)$", body, re.M)
        title = re.search(r"^## (.+?)(?: \([a-z0-9_]+\))?$", body, re.M)
        if name == SUMMARY or not found:
            continue
        kind = name.partition(" / ")[2] or "any machine"
        short = (title.group(1) if title else name).split(":")[0]  # "Training speed: cnnlab against ..." -> its head
        kinds.setdefault(kind, []).append(f"- {short}: {found.group(1)}")
    lines = ["## Summary", ""]
    for kind, items in kinds.items():
        lines += [f"Machine kind `{kind}`:" if kind != "any machine" else "On any machine:", "", *items, ""]
    return "\n".join(lines)


def _with_summary(text: str) -> str:
    return _replace(text, SUMMARY, summary_text(text))
