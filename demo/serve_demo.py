"""`make run`: Conveyor on SQLite with an embedded runner, running the demo repository.

Starts `conveyor serve --runner`, registers demo/repo as a repository (a git
copy in the data directory), dispatches its workflow, follows the run until
it ends, and leaves the server running with the URLs to look at (Ctrl-C stops).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), ".conveyor-demo")


def _free_port(preferred: int = 8080) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo_repository() -> str:
    repo = os.path.join(DATA, "demo-repo")
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, "repo"), repo)
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@example.invalid"]
    subprocess.run([*git, "-c", "init.defaultBranch=main", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "demo"], cwd=repo, check=True)
    return repo


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. from make's caller) stops the server as Ctrl-C does


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    shutil.rmtree(DATA, ignore_errors=True)  # every demo starts from an empty server
    os.makedirs(DATA)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "serve",
            "--runner",
            "--data-dir",
            DATA,
            "--port",
            str(port),
        ],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("conveyor serve did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        with open(os.path.join(DATA, "admin-token")) as f:
            token = f.read().strip()
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        repo = api.post(
            "/api/v1/repositories", json={"name": "demo/app", "url": _demo_repository()}
        )
        repo_id = repo.json()["id"]
        wf = api.post(
            "/api/v1/workflows",
            json={"repository_id": repo_id, "path": ".github/workflows/demo.yml"},
        ).json()
        run_id = api.post(
            f"/api/v1/workflows/{wf['id']}/dispatch", json={"inputs": {"greeting": "Hello"}}
        ).json()["run_id"]
        print(f"\nDispatched the demo workflow: run {run_id}")
        while api.get(f"/api/v1/runs/{run_id}").json()["status"] != "completed":
            time.sleep(0.2)
        run = api.get(f"/api/v1/runs/{run_id}").json()
        print(f"Run {run_id}: {run['conclusion']}")
        for job in api.get(f"/api/v1/runs/{run_id}/jobs").json()["items"]:
            print(f"  {job['name']:<24} {job['conclusion']}")
        print(
            f"""
Look at:
  API docs        {url}/api/v1/docs
  the run         {url}/api/v1/runs/{run_id}
  its jobs        {url}/api/v1/runs/{run_id}/jobs
  a job's log     {url}/api/v1/jobs/<job id>/logs.txt
  (send the header: Authorization: Bearer $(cat {DATA}/admin-token))

Conveyor keeps running with its embedded runner; Ctrl-C stops it.""",
            flush=True,
        )
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
