"""Median wall time of `conveyor run` for five workflow shapes, and derived overheads.

    python bench/local_run.py [--runs 5]

(a) 1 job x 1 step `true`; (b) 1 job x 100 steps; (c) 50 independent jobs x
1 step; (d) a 4x5 matrix x 3 steps; (e) a chain of 10 jobs through `needs`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def _steps(n: int) -> str:
    return "".join("      - run: true\n" for _ in range(n))


def workflows() -> dict[str, str]:
    head = "on: push\njobs:\n"
    job = "  j{i}:\n    runs-on: ubuntu-latest\n{needs}    steps:\n{steps}"
    return {
        "a": head + job.format(i=0, needs="", steps=_steps(1)),
        "b": head + job.format(i=0, needs="", steps=_steps(100)),
        "c": head + "".join(job.format(i=i, needs="", steps=_steps(1)) for i in range(50)),
        "d": head + "  m:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n"
        "        x: [1, 2, 3, 4]\n        y: [1, 2, 3, 4, 5]\n    steps:\n" + _steps(3),
        "e": head
        + "".join(
            job.format(i=i, needs=f"    needs: j{i - 1}\n" if i else "", steps=_steps(1))
            for i in range(10)
        ),
    }


def measure(repo: str, workflow: str, runs: int) -> float:
    times = []
    cmd = [sys.executable, "-m", "conveyor", "run", "--workflow", workflow]
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{workflow} failed: {proc.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="conveyor-bench-")
    try:
        repo = os.path.join(tmp, "repo")
        os.makedirs(os.path.join(repo, ".github", "workflows"))
        for name, text in workflows().items():
            with open(os.path.join(repo, ".github", "workflows", f"{name}.yml"), "w") as f:
                f.write(text)
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
        subprocess.run([*git, "-c", "init.defaultBranch=main", "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "bench"], cwd=repo, check=True)
        results = {}
        labels = {
            "a": "1 job x 1 step",
            "b": "1 job x 100 steps",
            "c": "50 jobs x 1 step",
            "d": "4x5 matrix x 3 steps",
            "e": "chain of 10 jobs",
        }
        for name in "abcde":
            results[name] = measure(repo, f".github/workflows/{name}.yml", args.runs)
            print(f"({name}) {labels[name]:<22} {results[name] * 1000:8.1f} ms", flush=True)
        per_step = (results["b"] - results["a"]) / 99
        per_job_chain = (results["e"] - results["a"]) / 9
        print(f"per step overhead            {per_step * 1000:8.2f} ms")
        print(f"per job overhead (chain)     {per_job_chain * 1000:8.2f} ms")
        print(f"per job (50 parallel jobs)   {(results['c'] - results['a']) / 49 * 1000:8.2f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
