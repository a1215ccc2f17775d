"""Throughput of this tree against another commit, measured in turns on the same machine.

    python bench/compare.py BASE [--rounds 3] [--backend postgres|sqlite] [--jobs 1200]

A shared machine's speed drifts by tens of percent within minutes, more than
most changes are worth; alternating the two trees (base, this, base, this…)
lets both meet the same drift. BASE is checked out into a temporary git
worktree, and both trees are driven by this tree's bench/throughput.py (one
client for both); only the server and runners come from each tree's `src`.
Prints each run's figures, then the medians.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_FIGURES = {
    "jobs/s": re.compile(r"([\d.]+) jobs/s"),
    "machine": re.compile(r"([\d.]+) ms on the machine"),
    "server": re.compile(r"the server ([\d.]+) ms"),
    "runners": re.compile(r"their steps ([\d.]+) ms"),
    "alone": re.compile(r"runners alone ([\d.]+) ms"),
    "postgres": re.compile(r"PostgreSQL ([\d.]+) ms"),
}


def measure(src: Path, backend: str, jobs: int) -> dict[str, float]:
    """One throughput run with the server and runners of `src`: its figures by name."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, str(HERE / "bench" / "throughput.py"), "--jobs", str(jobs)]
    command += ["--samples", "1", "--backend", backend]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    figures = {}
    for name, pattern in _FIGURES.items():
        found = pattern.search(out)
        if found:
            figures[name] = float(found.group(1))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the commit to compare against (any git revision)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--jobs", type=int, default=1200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="conveyor-compare-") as tmp:
        base = Path(tmp) / "base"
        git = ["git", "-C", str(HERE)]
        subprocess.run(
            [*git, "worktree", "add", "--detach", "-q", str(base), args.base], check=True
        )
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
            for _ in range(args.rounds):
                for label, src in (("base", base / "src"), ("this", HERE / "src")):
                    figures = measure(src, args.backend, args.jobs)
                    runs[label].append(figures)
                    shown = "  ".join(f"{name} {value:g}" for name, value in figures.items())
                    print(f"{label:4}  {shown}", flush=True)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(base)], check=True)
    print(f"medians of {args.rounds} ({args.backend}, {args.jobs} jobs; CPU in ms per job):")
    for label, figures in runs.items():
        names = figures[0].keys() if figures else ()
        medians = {name: statistics.median(f[name] for f in figures) for name in names}
        print(f"{label:4}  " + "  ".join(f"{name} {value:g}" for name, value in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
