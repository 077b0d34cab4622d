"""How much of the config the input walk in tests/test_config.py covers, counted from the code, and written to
RELIABILITY.md's section "input walk" by `make reliability-counts` (seconds: the configs are composed, no test runs).

The counts change whenever a key or a domain is added; written by hand they went stale, so the rows of RELIABILITY.md
point here, and tests/test_config.py fails when this section no longer matches the code.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import DOMAINS, leaves
from cnnlab.documents import write_section

RELIABILITY = Path(__file__).resolve().parents[1] / "RELIABILITY.md"
SECTION = "input walk"


def counts() -> dict[str, int]:
    from tests import test_config as walk

    numbers = walk.beyond_type_cases()
    return {
        "domains": len(DOMAINS),
        "domains with a value outside": sum(domain.outside is not None for domain in DOMAINS.values()),
        "typed keys": len(walk._every_typed_key()),
        "leaves": len({key for _, cfg in walk._every_config() for key in leaves(cfg)}),
        "block fields": len(walk.BLOCK_CASES),
        "sections": len(walk.SECTIONS),
        "number keys": len({key for key, _, _ in numbers}),
        "number cases": len(numbers),
    }


def section_text() -> str:
    found = counts()
    rows = [
        ("entries of `DOMAINS` (cnnlab/config/domains.py)", found["domains"]),
        (
            "of those, the entries with a value outside them, each fed through its command's checks",
            found["domains with a value outside"],
        ),
        (
            "the others: free text, or looked up in the store first thing",
            found["domains"] - found["domains with a value outside"],
        ),
        ("typed keys (booleans, options, whole numbers, numbers) fed a wrong type at composition", found["typed keys"]),
        ("leaves of the composed run, sweep, use, compare, reproduce and verify configs", found["leaves"]),
        ("numeric fields of a named block, per model option, set by name and by index", found["block fields"]),
        ("sections of the composed configs given a key outside the schema with `+` and `++`", found["sections"]),
        ("whole-number and float keys at their type's limits", found["number keys"]),
        ("cases of those (beyond a 32-bit integer either way; inf and nan)", found["number cases"]),
    ]
    return "\n".join(
        [
            "## The input walk, counted (`make reliability-counts`, any machine)",
            "",
            "What `tests/test_config.py` walks, counted from the code when this section was written; the rows above "
            "that name the walk refer to these counts.",
            "",
            "| walked | count |",
            "|---|---|",
            *(f"| {what} | {count} |" for what, count in rows),
        ]
    )


def main() -> None:
    write_section(RELIABILITY, SECTION, section_text(), header="# Reliability\n")
    print(f"{RELIABILITY}: section {SECTION!r} written")


if __name__ == "__main__":
    main()
