"""`make run` before the server exists: run the demo workflow locally and show the result."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="conveyor-demo-") as tmp:
        repo = os.path.join(tmp, "demo")
        shutil.copytree(os.path.join(HERE, "repo"), repo)
        git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
        subprocess.run([*git, "-c", "init.defaultBranch=main", "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "demo"], cwd=repo, check=True)
        report = os.path.join(tmp, "report.json")
        print(f"conveyor run --workflow .github/workflows/demo.yml  (in {repo})\n", flush=True)
        status = subprocess.call(
            [
                sys.executable,
                "-m",
                "conveyor",
                "run",
                "--workflow",
                ".github/workflows/demo.yml",
                "--report",
                report,
                "--color",
                "always",
            ],
            cwd=repo,
        )
        print(
            "\nThe demo workflow is demo/repo/.github/workflows/demo.yml; "
            "run your own with `conveyor run --workflow <file>` inside a git checkout."
        )
        return status


if __name__ == "__main__":
    sys.exit(main())
