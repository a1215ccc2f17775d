"""Re-running failed jobs end to end: real server and runner processes, both backends."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.service.cluster import cluster, jobs_of, wait_run

# `a` appends to a ledger each time it really runs and uploads an artifact; `b` uploads
# its log whatever happens, and fails on the first attempt only; `c` needs a's artifact.
WORKFLOW = """
    on: workflow_dispatch
    jobs:
      a:
        runs-on: ubuntu-latest
        outputs:
          token: ${{{{ steps.t.outputs.token }}}}
        steps:
          - id: t
            run: |
              echo "a ran in attempt ${{{{ github.run_attempt }}}}" >> "{ledger}"
              echo "token=from-a-${{{{ github.run_attempt }}}}" >> "$GITHUB_OUTPUT"
              echo "built in attempt ${{{{ github.run_attempt }}}}" > built.txt
          - uses: actions/upload-artifact@v4
            with: {{name: built, path: built.txt}}
      b:
        runs-on: ubuntu-latest
        steps:
          - run: echo "b's log" > log.txt
          - run: test "${{{{ github.run_attempt }}}}" != 1
          - if: always()
            uses: actions/upload-artifact@v4
            with: {{name: b-log, path: log.txt}}
      c:
        needs: [a, b]
        runs-on: ubuntu-latest
        steps:
          - uses: actions/download-artifact@v4
            with: {{name: built}}
          - run: |
              echo "c saw ${{{{ needs.a.outputs.token }}}}" >> "{ledger}"
              echo "c read $(cat built.txt)" >> "{ledger}"
"""


def test_rerun_failed_jobs_carries_over_the_jobs_that_succeeded(
    tmp_path: Path, database_url: str | None
) -> None:
    ledger = tmp_path / "ledger.txt"
    source = textwrap.dedent(WORKFLOW.format(ledger=ledger)).lstrip()
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        created = api.post("/api/v1/workflows", json={"path": "rerun.yml", "source": source})
        assert created.status_code == 201, created.text
        dispatched = api.post(f"/api/v1/workflows/{created.json()['id']}/dispatch", json={})
        first_id = dispatched.json()["run_id"]
        first = wait_run(api, first_id)
        assert first["conclusion"] == "failure"
        assert {j["key"]: j["conclusion"] for j in jobs_of(api, first_id)} == {
            "a": "success",
            "b": "failure",
            "c": "skipped",
        }
        assert ledger.read_text().splitlines() == ["a ran in attempt 1"]

        answer = api.post(f"/api/v1/runs/{first_id}/rerun-failed")
        assert answer.status_code == 202, answer.text
        second_id = answer.json()["run_id"]
        second = wait_run(api, second_id)
        assert second["conclusion"] == "success"
        assert (second["attempt"], second["run_number"]) == (2, first["run_number"])
        by_key = {j["key"]: j for j in jobs_of(api, second_id)}
        assert {k: j["conclusion"] for k, j in by_key.items()} == {
            "a": "success",
            "b": "success",
            "c": "success",
        }
        # `a` did not run again; `c` saw the output and the artifact of a's first attempt,
        # and `b` uploaded its log again (its first attempt's is not carried over).
        assert ledger.read_text().splitlines() == [
            "a ran in attempt 1",
            "c saw from-a-1",
            "c read built in attempt 1",
        ]
        artifacts = api.get(f"/api/v1/runs/{second_id}/artifacts").json()["items"]
        assert sorted(a["name"] for a in artifacts) == ["b-log", "built"]
        assert by_key["a"]["outputs"] == {"token": "from-a-1"}
        assert by_key["a"]["reason"] == "carried over from the previous attempt"
        assert by_key["a"]["started_at"] is None and by_key["b"]["started_at"] is not None

        # A run with nothing failed has nothing to re-run.
        nothing = api.post(f"/api/v1/runs/{second_id}/rerun-failed")
        assert nothing.status_code == 409 and nothing.json()["code"] == "conflict"
        assert "no failed jobs" in nothing.json()["message"]


MATRIX = """
    on: workflow_dispatch
    jobs:
      stable:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            n: [1, 2]
        steps:
          - run: echo "stable ${{{{ matrix.n }}}} attempt ${{{{ github.run_attempt }}}}" >> "{ledger}"
      flaky:
        runs-on: ubuntu-latest
        strategy:
          fail-fast: false
          matrix:
            n: [1, 2]
        steps:
          - run: |
              echo "flaky ${{{{ matrix.n }}}} attempt ${{{{ github.run_attempt }}}}" >> "{ledger}"
              test "${{{{ matrix.n }}}}-${{{{ github.run_attempt }}}}" != 2-1
      report:
        needs: flaky
        if: always()
        runs-on: ubuntu-latest
        steps:
          - run: echo "report attempt ${{{{ github.run_attempt }}}}" >> "{ledger}"
"""


def test_rerun_failed_reruns_every_instance_of_a_failed_matrix_and_its_dependants(
    tmp_path: Path, database_url: str | None
) -> None:
    ledger = tmp_path / "ledger.txt"
    source = textwrap.dedent(MATRIX.format(ledger=ledger)).lstrip()
    with cluster(tmp_path, database_url) as (server, _), server.api() as api:
        created = api.post("/api/v1/workflows", json={"path": "matrix.yml", "source": source})
        assert created.status_code == 201, created.text
        first_id = api.post(f"/api/v1/workflows/{created.json()['id']}/dispatch", json={}).json()[
            "run_id"
        ]
        assert wait_run(api, first_id)["conclusion"] == "failure"
        second_id = api.post(f"/api/v1/runs/{first_id}/rerun-failed").json()["run_id"]
        assert wait_run(api, second_id)["conclusion"] == "success"

        # `report` succeeded in attempt 1 but needs `flaky`, which runs again: so does it.
        assert sorted(ledger.read_text().splitlines()) == sorted(
            [
                "stable 1 attempt 1",
                "stable 2 attempt 1",
                "flaky 1 attempt 1",
                "flaky 2 attempt 1",
                "report attempt 1",
                "flaky 1 attempt 2",
                "flaky 2 attempt 2",
                "report attempt 2",
            ]
        )
        jobs = jobs_of(api, second_id)
        assert sorted((j["key"], j["conclusion"]) for j in jobs) == [
            ("flaky", "success"),
            ("flaky", "success"),
            ("report", "success"),
            ("stable", "success"),  # both instances carried over as one job
        ]
