"""load_workflow / load_action: GitHub's full syntax becomes the model, defaults applied once."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from conveyor.errors import Span, WorkflowError
from conveyor.workflow.model import DEFAULT_JOB_TIMEOUT_MINUTES, Container, InputSpec, Workflow
from conveyor.workflow.parse import load_action, load_workflow

CASES = Path(__file__).parent / "cases"
FULL = CASES / "valid" / "full-syntax.yml"


def workflow(text: str) -> Workflow:
    return load_workflow("w.yml", textwrap.dedent(text))


def problems(text: str) -> list[str]:
    with pytest.raises(WorkflowError) as caught:
        workflow(text)
    return [str(d) for d in caught.value.diagnostics]


@pytest.fixture(scope="module")
def full() -> Workflow:
    return load_workflow(str(FULL), display_path="full.yml")


def test_top_level_keys(full: Workflow) -> None:
    assert full.name == "Full syntax"
    assert full.run_name == "Deploy by @${{ github.actor }}"
    assert full.span == Span("full.yml", 2, 1)  # after the leading `---`
    assert full.concurrency is not None
    assert full.concurrency.cancel_in_progress is True
    assert full.permissions == {"contents": "read", "pull-requests": "write"}


def test_env_values_become_strings_as_written(full: Workflow) -> None:
    assert full.env == {
        "NUMBER": "1",
        "FLOAT": "1.10",
        "FLAG": "true",
        "EMPTY": "",
        "TEXT": "hello",
    }


def test_jobs_keep_file_order(full: Workflow) -> None:
    assert list(full.jobs) == ["build", "test", "group", "call", "call-with-secrets"]
    assert full.jobs["build"].span == Span("full.yml", 21, 3)


def test_job_fields(full: Workflow) -> None:
    build = full.jobs["build"]
    assert build.runs_on == "${{ matrix.os }}"
    assert build.timeout_minutes == 30
    assert build.continue_on_error == "${{ matrix.experimental }}"
    assert dict(build.outputs) == {"version": "${{ steps.v.outputs.version }}", "count": "3"}
    assert build.environment == {"name": "production", "url": "https://example.com"}
    assert build.strategy is not None
    assert build.strategy.fail_fast is False
    assert build.strategy.max_parallel == 2
    assert build.strategy.matrix["node"] == [18, 20]
    assert build.strategy.matrix["exclude"] == [{"os": "macos-latest", "node": 18}]


def test_job_defaults_merge_over_workflow_defaults(full: Workflow) -> None:
    assert full.jobs["build"].defaults.shell == "bash"
    assert full.jobs["build"].defaults.working_directory == "app"
    assert full.jobs["test"].defaults.working_directory == "src"


def test_containers_and_services(full: Workflow) -> None:
    container = full.jobs["build"].container
    assert container is not None
    assert container.image == "node:20"
    assert dict(container.env) == {"CI": "yes"}
    assert container.ports == (80, "443:443")
    assert container.options == "--cpus 1"
    services = full.jobs["build"].services
    assert services["redis"] == Container("redis:7", Span("full.yml", 51, 14))
    assert services["db"].credentials["password"] == "${{ secrets.PW }}"


def test_steps(full: Workflow) -> None:
    checkout, version, local = full.jobs["build"].steps
    assert checkout.uses == "actions/checkout@v4"
    assert dict(checkout.with_) == {"fetch-depth": "0", "lfs": "true"}
    assert checkout.display_name == "Run actions/checkout@v4"
    assert version.id == "v"
    assert version.if_ == "github.ref == 'refs/heads/main'"
    assert version.shell == "cp {0} action.yml"
    assert version.working_directory == "${{ github.workspace }}"
    assert version.env == {"RETRIES": "3"}
    assert version.continue_on_error is True
    assert version.timeout_minutes == 5
    assert (local.index, local.uses) == (2, "./local/action")
    assert full.jobs["group"].steps[0].run == "42"


def test_other_job_shapes(full: Workflow) -> None:
    test = full.jobs["test"]
    assert test.needs == ("build",)
    assert test.if_ == "${{ always() }}"
    assert test.runs_on == ["self-hosted", "linux"]
    assert test.concurrency is not None and test.concurrency.group == "tests"
    assert test.permissions == "read-all"
    assert test.environment == "staging"
    assert test.timeout_minutes == DEFAULT_JOB_TIMEOUT_MINUTES
    assert full.jobs["group"].runs_on == {"group": "big-runners", "labels": ["linux"]}
    assert full.jobs["group"].needs == ("build", "test")


def test_reusable_workflow_callers(full: Workflow) -> None:
    call = full.jobs["call"]
    assert call.uses == "octo/repo/.github/workflows/deploy.yml@main"
    assert dict(call.with_) == {"count": 3, "dry-run": True}  # typed by the callee's inputs
    assert call.secrets == "inherit"
    assert call.runs_on is None and call.steps == ()
    secrets = full.jobs["call-with-secrets"].secrets
    assert isinstance(secrets, Mapping)
    assert dict(secrets) == {"token": "${{ secrets.TOKEN }}"}


def test_triggers(full: Workflow) -> None:
    on = full.on
    assert list(on) == [
        "push",
        "pull_request",
        "schedule",
        "workflow_dispatch",
        "workflow_call",
        "workflow_run",
        "issues",
        "release",
    ]
    assert on["push"].branches == ("main", "releases/**")
    assert on["push"].tags == ("v*",)
    assert on["push"].paths_ignore == ("docs/**",)
    assert on["push"].paths is None
    assert on["pull_request"].types == ("opened", "synchronize")
    assert on["pull_request"].branches == ("main",)
    assert on["schedule"].crons == ("30 5 * * 1-5", "0 0 1 JAN *")
    assert on["workflow_run"].workflows == ("CI",)
    assert on["workflow_run"].branches_ignore == ("wip",)
    assert on["issues"].types is None
    assert on["release"].types == ("published",)


def test_dispatch_and_call_inputs(full: Workflow) -> None:
    inputs = full.on["workflow_dispatch"].inputs
    assert inputs["level"] == InputSpec(
        "level", "choice", "Log level", True, "warning", ("info", "warning", "debug")
    )
    assert inputs["dry"] == InputSpec("dry", "boolean", default=False)
    assert inputs["count"].type == "number"
    assert inputs["target"].type == "environment"
    call = full.on["workflow_call"]
    assert call.inputs["name"].required is True
    assert call.outputs["result"].value == "${{ jobs.build.outputs.version }}"
    assert call.secrets == {"token": {"required": True}}


@pytest.mark.parametrize(
    ("on", "events"),
    [
        ("push", ["push"]),
        ("[push, workflow_dispatch]", ["push", "workflow_dispatch"]),
        ("{push: null, pull_request: {}}", ["push", "pull_request"]),
    ],
)
def test_on_forms(on: str, events: list[str]) -> None:
    text = f"on: {on}\njobs:\n  a:\n    runs-on: x\n    steps: [{{run: echo}}]\n"
    assert list(load_workflow("w.yml", text).on) == events


def test_on_may_follow_jobs_and_be_quoted() -> None:
    wf = workflow("""\
        jobs:
          a:
            runs-on: x
            steps: [{run: echo}]
        'on': push
    """)
    assert wf.on["push"].span == Span("w.yml", 5, 7)


def test_if_keeps_booleans_and_numbers() -> None:
    wf = workflow("""\
        on: push
        jobs:
          a:
            if: false
            runs-on: x
            steps:
              - run: echo
                if: 0
    """)
    assert wf.jobs["a"].if_ is False
    assert wf.jobs["a"].steps[0].if_ == 0


def test_strategy_matrix_may_be_an_expression() -> None:
    wf = workflow("""\
        on: push
        jobs:
          a:
            runs-on: x
            strategy:
              matrix: ${{ fromJSON(needs.p.outputs.m) }}
            steps: [{run: echo}]
    """)
    assert wf.jobs["a"].strategy is not None
    assert wf.jobs["a"].strategy.matrix == "${{ fromJSON(needs.p.outputs.m) }}"


def test_unreadable_file_is_a_workflow_error(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as caught:
        load_workflow(str(tmp_path / "missing.yml"))
    assert str(caught.value).endswith("cannot read file: No such file or directory [io-error]")


def test_non_utf8_file_names_the_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "latin.yml"
    path.write_bytes(b"on: push\nname: caf\xe9\n")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(str(path), display_path="latin.yml")
    assert str(caught.value) == "latin.yml:2:10: file is not valid UTF-8 (byte 0xe9) [encoding]"


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yml"
    path.write_bytes(
        b"\xef\xbb\xbfon: push\njobs:\n  a:\n    runs-on: x\n    steps: [{run: echo}]\n"
    )
    assert list(load_workflow(str(path)).on) == ["push"]


def test_composite_action(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text(
        textwrap.dedent("""\
            name: greet
            description: say hello
            inputs:
              who:
                required: true
              empty: {}
            outputs:
              greeting:
                value: ${{ steps.s.outputs.text }}
            runs:
              using: composite
              steps:
                - id: s
                  run: echo "text=hi ${{ inputs.who }}" >> "$GITHUB_OUTPUT"
                  shell: bash
                - uses: ./other
        """)
    )
    action = load_action(str(path))
    assert action.using == "composite"
    assert action.inputs["who"].required is True
    assert action.inputs["empty"] == InputSpec("empty")
    assert action.outputs["greeting"].value == "${{ steps.s.outputs.text }}"
    assert [step.id for step in action.steps] == ["s", None]


def test_other_actions_keep_using_without_steps(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text("name: n\nruns:\n  using: node20\n  main: index.js\n")
    action = load_action(str(path))
    assert (action.using, action.steps) == ("node20", ())


def test_invalid_composite_action_reports_every_step(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text("runs:\n  using: composite\n  steps:\n  - name: Foo\n  - run: echo\n")
    with pytest.raises(WorkflowError) as caught:
        load_action(str(path), display_path="action.yml")
    assert [str(d) for d in caught.value.diagnostics] == [
        "action.yml:4:5: a step needs either 'run' or 'uses' [step-run-and-uses]",
        "action.yml:5:5: a run step in a composite action needs 'shell' [missing-key]",
    ]


def test_composite_action_without_steps(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text("runs:\n  using: composite\n")
    with pytest.raises(WorkflowError) as caught:
        load_action(str(path), display_path="action.yml")
    assert str(caught.value) == "action.yml:2:3: a composite action needs 'steps' [missing-key]"


def test_every_problem_is_collected() -> None:
    found = problems("""\
        on: push
        jobs:
          a:
            runs-on: x
            timeout-minutes: never
            steps:
              - run: echo
                with: {a: 1}
          b:
            needs: nope
            steps: [{run: echo}]
    """)
    assert found == [
        "w.yml:5:22: timeout-minutes: expected a number or an expression, got a string [wrong-type]",
        "w.yml:8:9: unknown key 'with' in a run step; allowed: continue-on-error, env, id, if, "
        "name, run, run-once, shell, timeout-minutes, working-directory [unknown-key]",
        "w.yml:9:3: job 'b' needs 'runs-on' [missing-key]",
        "w.yml:10:12: job 'b' needs unknown job 'nope'; jobs: a, b [unknown-need]",
    ]


def test_run_once_is_a_literal_boolean_of_a_jobs_steps() -> None:
    valid = workflow("""\
        on: push
        jobs:
          a:
            runs-on: x
            steps:
              - run: ./migrate
                run-once: true
              - uses: ./deploy
                run-once: false
              - run: echo
    """)
    assert [step.run_once for step in valid.jobs["a"].steps] == [True, False, False]
    assert problems("""\
        on: push
        jobs:
          a:
            runs-on: x
            steps:
              - run: ./migrate
                run-once: yes
              - run: ./seed
                run-once: ${{ github.event_name == 'push' }}
    """) == [
        "w.yml:7:19: run-once: expected true or false (not an expression), got a string "
        "[wrong-type]",
        "w.yml:9:19: run-once: expected true or false (not an expression), got a string "
        "[wrong-type]",
    ]


def test_run_once_is_not_a_key_of_a_composite_actions_steps(tmp_path: Path) -> None:
    path = tmp_path / "action.yml"
    path.write_text(
        "runs:\n  using: composite\n  steps:\n  - run: echo\n    shell: bash\n    run-once: true\n"
    )
    with pytest.raises(WorkflowError) as caught:
        load_action(str(path), display_path="action.yml")
    [diagnostic] = caught.value.diagnostics
    assert str(diagnostic).startswith("action.yml:6:5: unknown key 'run-once' in a run step")


def test_inputs_under_an_event_without_inputs_is_an_unknown_key_not_a_crash(tmp_path) -> None:
    import pytest

    from conveyor.errors import WorkflowError
    from conveyor.workflow import load_workflow

    text = "on:\n  fork:\n    inputs:\n      x: {}\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo\n"
    with pytest.raises(WorkflowError) as info:
        load_workflow("wf.yml", text=text)
    assert [d.code for d in info.value.diagnostics] == ["unknown-key"]
    assert str(info.value.diagnostics[0].span) == "wf.yml:3:5"
