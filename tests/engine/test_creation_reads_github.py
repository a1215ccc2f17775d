"""Which runs' root-job decisions may read the run number (it lives in `github`)."""

from __future__ import annotations

import textwrap

import pytest

from conveyor.engine.runplan import plan_run
from conveyor.engine.scheduler import creation_reads_github
from conveyor.workflow import parse_workflow
from conveyor.workflow.model import Workflow

CALLED = """
on: workflow_call
jobs:
  inner:
    runs-on: linux
    steps: [{run: echo inner}]
"""


def reads(jobs: str) -> bool:
    source = "on: push\njobs:\n" + textwrap.indent(textwrap.dedent(jobs), "  ")
    workflow = parse_workflow("ci.yml", source)

    def load(path: str) -> Workflow:
        return parse_workflow(path, CALLED)

    return creation_reads_github(plan_run(workflow, load))


def test_plain_root_jobs_read_nothing_of_github() -> None:
    assert not reads(
        """
        build:
          name: Build ${{ matrix.os }}
          if: ${{ vars.enabled == 'yes' }}
          runs-on: ${{ matrix.os }}
          strategy:
            matrix: {os: [linux, mac]}
            max-parallel: ${{ vars.parallel }}
          steps: [{run: 'echo ${{ github.run_number }} ${{ github.sha }}'}]
        deploy:
          needs: build
          if: github.run_number > 5
          runs-on: linux
          steps: [{run: echo deploy}]
        """
    )  # steps and later jobs are decided after the run exists


@pytest.mark.parametrize(
    "fields",
    [
        "runs-on: linux\nif: github.run_number > 5",
        "runs-on: linux\nif: ${{ contains(toJSON(GitHub), '7') }}",
        "runs-on: linux\nname: build ${{ github.run_number }}",
        "runs-on: ${{ fromJSON('[\"linux\"]')[github.run_number] }}",
        "runs-on: linux\nstrategy: {matrix: {n: ['${{ github.run_number }}']}}",
        "runs-on: linux\nstrategy: {matrix: {n: [1]}, fail-fast: '${{ github.run_number > 1 }}'}",
    ],
)
def test_a_root_job_field_that_reads_github_counts(fields: str) -> None:
    job = textwrap.indent(fields + "\nsteps: [{run: echo}]\n", "  ")
    assert reads("build:\n" + job)


def test_a_called_workflow_counts() -> None:
    assert reads("call:\n  uses: ./.github/workflows/called.yml\n")
