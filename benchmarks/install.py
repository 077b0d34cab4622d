"""pip against uv, installing requirements.lock into a new virtual environment on a fresh clone; BENCHMARKS.md.

Each tool installs the lock and then cnnlab itself (editable, no dependencies), as `make setup` does, with its cache
primed by one untimed install first, so the figure is the install, not the download. Both must leave the same set of
distributions, or the section says they differ.

    python benchmarks/install.py [--python python3.11] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_section

ROOT = Path(__file__).resolve().parents[1]


def install(tool: str, python: str, clone: Path) -> tuple[float, set[str]]:
    """Seconds to install the lock and cnnlab into a new venv of ``clone`` with ``tool``, and the installed set."""
    venv = clone / f".venv-{tool}"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    if tool == "uv":  # uv itself comes from PyPI through pip; its install is part of the time
        steps = [
            [py, "-m", "pip", "install", "--quiet", "uv"],
            [str(venv / "bin" / "uv"), "pip", "install", "--quiet", "--python", py, "-r", "requirements.lock"],
            [str(venv / "bin" / "uv"), "pip", "install", "--quiet", "--python", py, "--no-deps", "-e", "."],
        ]
    else:
        steps = [
            [py, "-m", "pip", "install", "--quiet", "-r", "requirements.lock"],
            [py, "-m", "pip", "install", "--quiet", "--no-deps", "-e", "."],
        ]
    start = time.perf_counter()
    for step in steps:
        subprocess.run(step, cwd=clone, check=True)
    seconds = time.perf_counter() - start
    frozen = subprocess.run([py, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True)
    names = {line.lower().replace("_", "-") for line in frozen.stdout.split() if "==" in line}
    return seconds, names - {name for name in names if name.startswith(("uv==", "pip=="))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter the environments are made with")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default="BENCHMARKS.md")
    args = parser.parse_args()
    version = subprocess.run(
        [args.python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    sets: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-install-") as work:
        for round_ in range(args.repeats + 1):  # round 0 primes both caches and is not counted
            for tool in ("pip", "uv"):
                clone = Path(work) / f"{tool}-{round_}"
                subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
                seconds, sets[tool] = install(tool, args.python, clone)
                print(f"{tool} round {round_}: {seconds:.1f} s, {len(sets[tool])} distributions", flush=True)
                if round_:
                    times[tool].append(seconds)
    same = sets["pip"] == sets["uv"]
    pip_s, uv_s = statistics.median(times["pip"]), statistics.median(times["uv"])
    faster = "uv" if uv_s < pip_s else "pip"
    summary = (
        f"From the lock, {faster} installs the locked set {max(pip_s, uv_s) / min(pip_s, uv_s):.1f}x faster "
        f"({min(pip_s, uv_s):.0f} s against {max(pip_s, uv_s):.0f} s, caches primed); "
        + ("both install the same set, so `make setup` uses " + faster + "." if same else "the sets DIFFER.")
    )
    lines = [
        "## Installing: pip against uv from requirements.lock",
        "",
        f"Command: `python benchmarks/install.py --repeats {args.repeats}` (Python {version}). A fresh clone and a new "
        "virtual environment per install; the lock, then cnnlab editable without dependencies, as `make setup` does. "
        "One untimed round first primes both tools' caches; the median of the rounds after it.",
        "",
        "| tool | seconds (median) | rounds | distributions installed |",
        "|---|---|---|---|",
        f"| pip | {pip_s:.1f} | {', '.join(f'{t:.1f}' for t in times['pip'])} | {len(sets['pip'])} |",
        f"| uv (its own install included) | {uv_s:.1f} | {', '.join(f'{t:.1f}' for t in times['uv'])} "
        f"| {len(sets['uv'])} |",
    ]
    if not same:
        lines += ["", f"Only pip: {sorted(sets['pip'] - sets['uv'])}; only uv: {sorted(sets['uv'] - sets['pip'])}"]
    write_section(ROOT / args.output, "install", "\n".join(lines), summary)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
