"""The server's secrets: a file read at start, handed to jobs, masked, never stored."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.service.secrets_file import SecretsFileError, load_secrets
from tests.service.cluster import cluster, jobs_of, wait_run

DEPLOY_KEY = "s3cr3t-value-42"

USES_SECRETS = """
on: workflow_dispatch
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - run: |
          printf '%s' "$KEY" | sha256sum
          echo "the key is $KEY"
          printf '%s\\n' "$PEM" | wc -l
        env:
          KEY: ${{ secrets.deploy_key }}
          PEM: ${{ secrets.PEM }}
"""


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_a_secrets_file_of_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "secrets",
        "# deploys\n\nDEPLOY_KEY=s3cr3t=with=equals \nlower_case= spaced\nEMPTY=\n",
    )
    assert load_secrets(path) == {
        "DEPLOY_KEY": "s3cr3t=with=equals ",
        "LOWER_CASE": " spaced",
        "EMPTY": "",
    }


def test_a_secrets_file_of_json_holds_values_of_several_lines(tmp_path: Path) -> None:
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    path = _write(tmp_path / "secrets.json", json.dumps({"PEM": pem, "naïve_": "x"}))
    with pytest.raises(SecretsFileError, match="not a secret name"):
        load_secrets(path)
    path = _write(tmp_path / "secrets.json", json.dumps({"PEM": pem}))
    assert load_secrets(path) == {"PEM": pem}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("s", "JUST_A_NAME\n", r"s:1: expected NAME=VALUE"),
        ("s", "OK=1\n1ST=x\n", r"s:2: '1ST' is not a secret name"),
        ("s", "BAD NAME=x\n", r"'BAD NAME' is not a secret name"),
        ("s", "=x\n", r"'' is not a secret name"),
        ("s", "GITHUB_TOKEN=x\n", r"may not start with GITHUB_"),
        ("s", "key=1\nKEY=2\n", r"s:2: secret 'KEY' is given twice"),
        ("s", "X'); DROP TABLE jobs; --=1\n", r"is not a secret name"),
        ("s", "A\u202eB=x\n", r"is not a secret name"),
        ("s.json", "[1, 2]", r"expected a JSON object"),
        ("s.json", '{"A": 1}', r"secret 'A' is not a string"),
        ("s.json", '{"A": "x",\n "B"}', r"s.json:2:5: Expecting ':' delimiter"),
    ],
)
def test_a_bad_secrets_file_is_refused_with_where(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(SecretsFileError, match=message):
        load_secrets(_write(tmp_path / name, text))


def test_unreadable_secrets_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretsFileError, match="cannot read the secrets file"):
        load_secrets(str(tmp_path / "missing"))
    with pytest.raises(SecretsFileError, match="not a regular file"):
        load_secrets(str(tmp_path))
    (tmp_path / "binary").write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(SecretsFileError, match=r"not UTF-8 \(byte 2\)"):
        load_secrets(str(tmp_path / "binary"))
    (tmp_path / "huge").write_bytes(b"A=" + b"x" * (1 << 20))
    with pytest.raises(SecretsFileError, match="larger than"):
        load_secrets(str(tmp_path / "huge"))


def test_serve_refuses_a_bad_secrets_file_with_a_clear_message(tmp_path: Path) -> None:
    path = _write(tmp_path / "secrets", "GITHUB_X=1\n")
    serve = [sys.executable, "-m", "conveyor", "serve", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [*serve, "--secrets-file", path], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"conveyor serve: {path}:1: secret names may not start with GITHUB_ ('GITHUB_X')"
    )


def test_jobs_read_the_servers_secrets_masked_and_the_database_never_holds_them(
    tmp_path: Path,
) -> None:
    pem = "-----BEGIN KEY-----\nline two\n-----END KEY-----"
    path = _write(tmp_path / "secrets.json", json.dumps({"DEPLOY_KEY": DEPLOY_KEY, "PEM": pem}))
    with cluster(tmp_path, None, options=("--secrets-file", path)) as (server, _):
        with server.api() as api:
            workflow = {"path": "deploy.yml", "source": USES_SECRETS}
            created = api.post("/api/v1/workflows", json=workflow)
            assert created.status_code == 201, created.text
            dispatch = f"/api/v1/workflows/{created.json()['id']}/dispatch"
            run_id = api.post(dispatch, json={"inputs": {}}).json()["run_id"]
            run = wait_run(api, run_id)
            (job,) = jobs_of(api, run_id)
            logs = api.get(f"/api/v1/jobs/{job['id']}/logs").json()["lines"]
        lines = [line["text"] for line in logs]
        assert run["conclusion"] == "success", lines
        assert lines == [
            f"{hashlib.sha256(DEPLOY_KEY.encode()).hexdigest()}  -",
            "the key is ***",
            "3",  # the PEM's lines
        ]
        database = sqlite3.connect(server.data_dir / "conveyor.db")
        dumped = "\n".join(database.iterdump())
        database.close()
        assert DEPLOY_KEY not in dumped and "line two" not in dumped
