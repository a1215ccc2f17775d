"""Execution semantics beyond the conformance corpus, through a real `conveyor run`."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.local.conftest import Repo


def test_fail_fast_cancels_running_matrix_siblings(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          m:
            runs-on: ubuntu-latest
            strategy:
              matrix:
                n: [1, 2, 3]
            steps:
              - run: |
                  if [ "${{ matrix.n }}" = 1 ]; then sleep 0.5; exit 3; fi
                  sleep 30
                  echo "sibling finished"
              - if: always()
                run: echo "cleanup ${{ matrix.n }}"
    """)
    started = time.monotonic()
    result = repo.run(wf, "--parallel", "3")
    assert time.monotonic() - started < 20
    assert result.status == 1
    conclusions = sorted(j["conclusion"] for j in result.job("m"))
    assert conclusions == ["cancelled", "cancelled", "failure"]
    assert "sibling finished" not in result.lines("m")
    assert sorted(result.lines("m")) == ["cleanup 1", "cleanup 2", "cleanup 3"]


def test_fail_fast_false_lets_siblings_finish(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          m:
            runs-on: ubuntu-latest
            strategy:
              fail-fast: false
              matrix:
                n: [1, 2]
            steps:
              - run: |
                  if [ "${{ matrix.n }}" = 1 ]; then exit 3; fi
                  sleep 0.3; echo "finished ${{ matrix.n }}"
    """)
    result = repo.run(wf)
    assert sorted(j["conclusion"] for j in result.job("m")) == ["failure", "success"]
    assert "finished 2" in result.lines("m")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_step_timeout_kills_the_whole_process_tree(repo: Repo, tmp_path) -> None:
    pidfile = tmp_path / "pids"
    wf = repo.workflow(f"""
        on: push
        jobs:
          t:
            runs-on: ubuntu-latest
            steps:
              - timeout-minutes: 0.02
                run: |
                  sleep 1000 &
                  echo $! >> {pidfile}
                  bash -c 'sleep 1000 & echo $! >> {pidfile}; wait' &
                  wait
              - if: always()
                run: echo "after timeout"
    """)
    started = time.monotonic()
    result = repo.run(wf)
    assert time.monotonic() - started < 30
    assert result.status == 1
    assert [j["conclusion"] for j in result.job("t")] == ["failure"]
    assert result.lines("t") == ["after timeout"]
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def test_job_timeout_fails_the_job(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          t:
            runs-on: ubuntu-latest
            timeout-minutes: 0.01
            steps:
              - run: sleep 30
    """)
    started = time.monotonic()
    result = repo.run(wf)
    assert time.monotonic() - started < 25
    assert [j["conclusion"] for j in result.job("t")] == ["failure"]


def test_sigint_cancels_the_run_and_always_steps_still_run(repo: Repo) -> None:
    marker = repo.root.parent / "started"
    wf = repo.workflow(f"""
        on: push
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: touch {marker}; sleep 60
              - run: echo "must not run"
              - if: always()
                run: echo "cleanup ran"
          b:
            needs: a
            runs-on: ubuntu-latest
            steps:
              - run: echo "must not run either"
    """)
    repo.commit()
    proc = subprocess.Popen(
        repo.command(wf), cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    import json

    report = json.loads((repo.root.parent / "report.json").read_text())
    by_id = {j["id"]: j for j in report["jobs"]}
    assert by_id["a"]["conclusion"] == "cancelled"
    assert by_id["b"]["conclusion"] in ("cancelled", "skipped")
    lines = [line for s in by_id["a"]["steps"] for line in s["log"]]
    assert lines == ["cleanup ran"]
    assert report["conclusion"] == "cancelled"


def test_a_second_sigint_stops_at_once_and_leaves_no_step_running(repo: Repo) -> None:
    pid_file = repo.root.parent / "pid"
    wf = repo.workflow(f"""
        on: push
        jobs:
          stubborn:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  trap '' INT TERM
                  sh -c 'trap "" INT TERM; echo $$ > {pid_file}.tmp; exec sleep 60' &
                  while [ ! -s {pid_file}.tmp ]; do sleep 0.01; done
                  mv {pid_file}.tmp {pid_file}
                  wait
    """)
    repo.commit()
    proc = subprocess.Popen(
        repo.command(wf), cwd=repo.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    sleeper = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the first asks the step to stop, which it ignores
    assert proc.poll() is None and _alive(sleeper)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130, err
    assert "stopping now" in err
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_secrets_are_masked_everywhere(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          s:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  echo "token is ${{ secrets.TOKEN }}"
                  echo "in env: $TOK"
                  printf 'multi: %s\\n' "${{ secrets.MULTI }}"
                env:
                  TOK: ${{ secrets.TOKEN }}
    """)
    result = repo.run(wf, "--secret", "TOKEN=s3cr3t-value", "--secret", "MULTI=line-one\nline-two")
    assert result.status == 0, result.err
    lines = result.lines("s")
    assert "token is ***" in lines and "in env: ***" in lines
    assert "multi: ***" in lines and "***" in lines
    assert "s3cr3t-value" not in result.out + result.err + str(result.report)
    assert "line-two" not in result.out + str(result.report)


def test_artifacts_travel_between_jobs(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          make:
            runs-on: ubuntu-latest
            steps:
              - run: mkdir -p out/sub && echo built > out/a.txt && echo deep > out/sub/b.txt
              - uses: actions/upload-artifact@v4
                with:
                  name: bundle
                  path: out/
          use:
            needs: make
            runs-on: ubuntu-latest
            steps:
              - run: test ! -e out/a.txt && echo "workspace is fresh"
              - uses: actions/download-artifact@v4
                with:
                  name: bundle
                  path: got
              - run: cat got/a.txt got/sub/b.txt
    """)
    result = repo.run(wf)
    assert result.status == 0, result.out + result.err
    assert result.lines("use") == ["workspace is fresh", "built", "deep"]


def test_remote_action_fails_with_a_clear_message(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          r:
            runs-on: ubuntu-latest
            steps:
              - uses: someone/something@v1
    """)
    result = repo.run(wf)
    assert result.status == 1
    assert "cannot be fetched" in result.out


def test_invalid_workflow_exits_2_with_position(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - run: echo ${{ 1 + }}
    """)
    result = repo.run(wf)
    assert result.status == 2
    assert ".github/workflows/wf.yml:6:25: " in result.err


def test_a_job_that_cannot_start_fails_saying_why(repo: Repo) -> None:
    wf = repo.workflow("""
        on: push
        jobs:
          build:
            runs-on: ubuntu-latest
            strategy:
              max-parallel: ${{ 'lots' }}
              matrix:
                n: [1, 2]
            steps:
              - run: echo never
          after:
            needs: build
            runs-on: ubuntu-latest
            steps:
              - run: echo never either
    """)
    result = repo.run(wf)
    assert result.status == 1, result.err
    assert "Traceback" not in result.err
    why = 'strategy max-parallel must be a number, not "lots"'
    assert f"build  ✗ failure: {why}" in result.out
    by_id = {job["id"]: job for job in result.report["jobs"]}
    assert (by_id["build"]["conclusion"], by_id["build"]["reason"]) == ("failure", why)
    assert by_id["after"]["conclusion"] == "skipped"
