"""Event → trigger matching with GitHub's filter rules, event helpers, and typed inputs."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.errors import ConveyorError, Span
from conveyor.workflow.model import InputSpec, Trigger
from conveyor.workflow.triggers import (
    Event,
    EventError,
    InputError,
    dispatch_inputs,
    matches,
)

SPAN = Span("w.yml", 2, 3)


def on(event: str, **filters: Any) -> dict[str, Trigger]:
    """`on: {event: filters}` with list filters turned into tuples, as the loader does."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in filters.items()}
    return {event: Trigger(event=event, span=SPAN, **fields)}


def push(ref: str, paths: list[str] | None = None) -> Event:
    return Event("push", {"ref": ref}, ref, paths)


def pull(action: str = "opened", base: str = "main", paths: list[str] | None = None) -> Event:
    payload = {"action": action, "pull_request": {"base": {"ref": base}}}
    return Event.from_pull_request(payload, changed_paths=paths)


@pytest.mark.parametrize(
    ("filters", "ref", "expected"),
    [
        ({}, "refs/heads/main", True),
        ({}, "refs/tags/v1.0", True),
        ({"branches": ["main"]}, "refs/heads/main", True),
        ({"branches": ["main"]}, "refs/heads/dev", False),
        ({"branches": ["main"]}, "refs/tags/main", False),  # only branches: tags never match
        ({"tags": ["v*"]}, "refs/tags/v1", True),
        ({"tags": ["v*"]}, "refs/heads/v1", False),  # only tags: branches never match
        ({"tags-ignore": ["v*"]}, "refs/heads/main", False),
        ({"branches-ignore": ["dev"]}, "refs/tags/v1", False),
        ({"branches": ["main"], "tags": ["v*"]}, "refs/tags/v2", True),
        ({"branches": ["main"], "tags": ["v*"]}, "refs/heads/main", True),
        ({"branches": ["main"], "tags": ["v*"]}, "refs/tags/x", False),
        ({"branches": ["feature/**"]}, "refs/heads/feature/a/b", True),
        ({"branches": ["feature/*"]}, "refs/heads/feature/a/b", False),
        ({"branches-ignore": ["dependabot/**"]}, "refs/heads/dependabot/npm/x", False),
        ({"branches-ignore": ["dependabot/**"]}, "refs/heads/main", True),
        ({"branches": ["releases/**", "!releases/**-alpha"]}, "refs/heads/releases/1-alpha", False),
        ({"branches": ["releases/**", "!releases/**-alpha"]}, "refs/heads/releases/1-beta", True),
        ({"tags": ["v[12].[0-9]+.[0-9]+"]}, "refs/tags/v2.10.3", True),
        ({"tags-ignore": ["v1.*"]}, "refs/tags/v1.2", False),
        ({"tags-ignore": ["v1.*"]}, "refs/tags/v2.0", True),
        ({}, "refs/pull/1/merge", True),
        ({"branches": ["main"]}, "refs/pull/1/merge", False),
    ],
)
def test_push_ref_filters(filters: dict[str, Any], ref: str, expected: bool) -> None:
    workflow_on = on("push", **{k.replace("-", "_"): v for k, v in filters.items()})
    assert (matches(workflow_on, push(ref)) is not None) is expected


@pytest.mark.parametrize(
    ("filters", "changed", "expected"),
    [
        ({"paths": ["docs/**"]}, ["docs/a.md"], True),
        ({"paths": ["docs/**"]}, ["src/a.py", "docs/a.md"], True),  # ANY path selects
        ({"paths": ["docs/**"]}, ["src/a.py"], False),
        ({"paths": ["docs/**"]}, [], False),
        ({"paths": ["docs/**"]}, None, True),  # unknown changes pass
        ({"paths_ignore": ["docs/**"]}, ["docs/a.md"], False),
        ({"paths_ignore": ["docs/**"]}, ["docs/a.md", "src/a.py"], True),  # not ALL ignored
        ({"paths_ignore": ["docs/**"]}, None, True),
        ({"paths_ignore": ["docs/**"]}, [], False),
        ({"paths": ["**.js"]}, ["src/js/app.js"], True),
        ({"paths": ["sub-project/**", "!sub-project/docs/**"]}, ["sub-project/docs/a"], False),
        ({"paths": ["sub-project/**", "!sub-project/docs/**"]}, ["sub-project/src/a"], True),
        (
            {"paths": ["sub-project/**", "!sub-project/docs/**"]},
            ["sub-project/docs/a", "sub-project/main.c"],
            True,
        ),
        ({"paths": ["*.md", "!README.md", "README*"]}, ["README.md"], True),
        ({"paths_ignore": ["docs/**", "!docs/api/**"]}, ["docs/api/x.md"], True),
        ({"branches": ["main"], "paths": ["src/**"]}, ["src/x"], True),
        ({"branches": ["main"], "paths": ["src/**"]}, ["lib/x"], False),
    ],
)
def test_push_path_filters(
    filters: dict[str, Any], changed: list[str] | None, expected: bool
) -> None:
    event = push("refs/heads/main", changed)
    assert (matches(on("push", **filters), event) is not None) is expected


def test_path_filters_are_not_evaluated_for_tag_pushes() -> None:
    workflow_on = on("push", tags=["v*"], paths=["src/**"])
    assert matches(workflow_on, push("refs/tags/v1", ["docs/a.md"])) is not None


def test_match_returns_the_trigger_of_the_event() -> None:
    workflow_on = {**on("push"), **on("workflow_dispatch")}
    assert matches(workflow_on, push("refs/heads/main")) is workflow_on["push"]
    assert matches(workflow_on, Event("workflow_dispatch")) is workflow_on["workflow_dispatch"]
    assert matches(workflow_on, Event("issues", {"action": "opened"})) is None
    assert matches({}, push("refs/heads/main")) is None


@pytest.mark.parametrize("name", ["pull_request", "pull_request_target"])
@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("opened", True),
        ("synchronize", True),
        ("reopened", True),
        ("closed", False),
        ("labeled", False),
    ],
)
def test_pull_request_default_types(name: str, action: str, expected: bool) -> None:
    payload = {"action": action, "pull_request": {"base": {"ref": "main"}}}
    event = Event.from_pull_request(payload, name=name)
    assert (matches(on(name), event) is not None) is expected


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        ({"types": ["closed"]}, pull("closed"), True),
        ({"types": ["closed"]}, pull("opened"), False),
        ({"types": ["labeled", "opened"]}, pull("opened"), True),
        ({"branches": ["main"]}, pull(base="main"), True),
        ({"branches": ["main"]}, pull(base="feature/x"), False),  # the BASE branch is tested
        ({"branches": ["releases/**"]}, pull(base="releases/v2"), True),
        ({"branches_ignore": ["mona/octocat"]}, pull(base="mona/octocat"), False),
        ({"paths": ["**.js"]}, pull(paths=["a/b.js"]), True),
        ({"paths": ["**.js"]}, pull(paths=["a/b.py"]), False),
        ({"paths": ["**.js"]}, pull(), True),
        ({"types": ["closed"], "branches": ["main"]}, pull("closed", "dev"), False),
    ],
)
def test_pull_request_filters(filters: dict[str, Any], event: Event, expected: bool) -> None:
    assert (matches(on("pull_request", **filters), event) is not None) is expected


@pytest.mark.parametrize(
    ("workflow_on", "event", "expected"),
    [
        (on("workflow_dispatch"), Event("workflow_dispatch"), True),
        (on("workflow_call"), Event("workflow_call"), True),
        (on("schedule", crons=("0 * * * *",)), Event("schedule", {"schedule": "0 * * * *"}), True),
        (on("schedule", crons=("0 * * * *",)), Event("schedule", {"schedule": "5 * * * *"}), False),
        (on("schedule", crons=("0 * * * *",)), Event("schedule"), True),
        (
            on("repository_dispatch", types=["deploy"]),
            Event("repository_dispatch", {"action": "deploy"}),
            True,
        ),
        (
            on("repository_dispatch", types=["deploy"]),
            Event("repository_dispatch", {"action": "test"}),
            False,
        ),
        (on("repository_dispatch"), Event("repository_dispatch", {"action": "anything"}), True),
        (on("issues", types=["opened"]), Event("issues", {"action": "opened"}), True),
        (on("issues", types=["opened"]), Event("issues", {"action": "closed"}), False),
        (on("issues", types=["opened"]), Event("issues"), False),
        (on("release"), Event("release", {"action": "published"}), True),
    ],
)
def test_other_events(workflow_on: dict[str, Trigger], event: Event, expected: bool) -> None:
    assert (matches(workflow_on, event) is not None) is expected


def workflow_run(name: str, branch: str, action: str = "completed") -> Event:
    payload = {
        "action": action,
        "workflow": {"name": name},
        "workflow_run": {"head_branch": branch},
    }
    return Event("workflow_run", payload)


@pytest.mark.parametrize(
    ("filters", "event", "expected"),
    [
        ({"workflows": ["Build"]}, workflow_run("Build", "main"), True),
        ({"workflows": ["Build"]}, workflow_run("Test", "main"), False),
        (
            {"workflows": ["Build"], "types": ["completed"]},
            workflow_run("Build", "x", "requested"),
            False,
        ),
        (
            {"workflows": ["Build"], "branches": ["releases/**"]},
            workflow_run("Build", "releases/1"),
            True,
        ),
        (
            {"workflows": ["Build"], "branches": ["releases/**"]},
            workflow_run("Build", "main"),
            False,
        ),
        ({"branches_ignore": ["canary"]}, workflow_run("Build", "canary"), False),
        ({"branches": ["main"]}, Event("workflow_run", {"action": "completed"}), False),
    ],
)
def test_workflow_run(filters: dict[str, Any], event: Event, expected: bool) -> None:
    assert (matches(on("workflow_run", **filters), event) is not None) is expected


def test_push_helper_collects_changed_paths_once_in_order() -> None:
    payload = {
        "ref": "refs/heads/main",
        "commits": [
            {"added": ["a.txt"], "modified": ["b.txt"], "removed": []},
            {"added": [], "modified": ["a.txt", "c.txt"], "removed": ["d.txt"]},
            {"id": "no lists at all"},
        ],
    }
    event = Event.from_push(payload)
    assert event.name == "push"
    assert event.ref == "refs/heads/main"
    assert event.changed_paths == ("a.txt", "b.txt", "c.txt", "d.txt")
    assert event.action is None


@pytest.mark.parametrize(
    "commits",
    [None, [], [{"added": ["x"]}] * 2048],
    ids=["absent", "empty", "truncated"],
)
def test_push_helper_unknown_changes(commits: list[Any] | None) -> None:
    payload: dict[str, Any] = {"ref": "refs/heads/main"}
    if commits is not None:
        payload["commits"] = commits
    assert Event.from_push(payload).changed_paths is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({}, "push payload has no 'ref' string"),
        ({"ref": 3}, "no 'ref' string"),
        ({"ref": "refs/heads/x", "commits": "abc"}, "'commits' must be a list"),
        ({"ref": "refs/heads/x", "commits": [1]}, "must hold objects"),
        ({"ref": "refs/heads/x", "commits": [{"added": "a.txt"}]}, "'commits[].added'"),
        ({"ref": "refs/heads/x", "commits": [{"removed": [1]}]}, "'commits[].removed'"),
    ],
)
def test_push_helper_rejects_malformed_payloads(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(EventError) as raised:
        Event.from_push(payload)
    assert message in str(raised.value)
    assert isinstance(raised.value, ConveyorError)


def test_pull_request_helper() -> None:
    payload = {"action": "synchronize", "pull_request": {"base": {"ref": "main"}}}
    event = Event.from_pull_request(payload, name="pull_request_target", changed_paths=["x"])
    assert (event.name, event.ref, event.action) == (
        "pull_request_target",
        "refs/heads/main",
        "synchronize",
    )
    assert event.changed_paths == ["x"]


@pytest.mark.parametrize(
    ("payload", "name", "message"),
    [
        ({"action": "opened"}, "pull_request", "no 'pull_request.base.ref'"),
        ({"action": "opened", "pull_request": {"base": "main"}}, "pull_request", "base.ref"),
        ({"pull_request": {"base": {"ref": "main"}}}, "pull_request", "no 'action'"),
        (
            {"action": "opened", "pull_request": {"base": {"ref": "m"}}},
            "push",
            "not a pull request",
        ),
    ],
)
def test_pull_request_helper_rejects(payload: dict[str, Any], name: str, message: str) -> None:
    with pytest.raises(EventError, match=message):
        Event.from_pull_request(payload, name=name)


def trigger_with(*specs: InputSpec, event: str = "workflow_dispatch") -> Trigger:
    return Trigger(event=event, span=SPAN, inputs={spec.name: spec for spec in specs})


INPUTS = trigger_with(
    InputSpec("env", type="choice", options=("staging", "production"), default="staging"),
    InputSpec("debug", type="boolean"),
    InputSpec("retries", type="number", default=3),
    InputSpec("message", required=True),
    InputSpec("target", type="environment"),
    InputSpec("ratio", type="number"),
)


def test_dispatch_inputs_defaults_and_zero_values() -> None:
    assert dispatch_inputs(INPUTS, {"message": "hi"}) == {
        "env": "staging",
        "debug": False,
        "retries": 3,
        "message": "hi",
        "target": "",
        "ratio": 0,
    }


def test_dispatch_inputs_coerces_strings() -> None:
    given = {
        "env": "production",
        "debug": "TRUE",
        "retries": "5",
        "message": "",
        "target": "prod-eu",
        "ratio": "0.25",
    }
    values = dispatch_inputs(INPUTS, given)
    assert values == {
        "env": "production",
        "debug": True,
        "retries": 5,
        "message": "",
        "target": "prod-eu",
        "ratio": 0.25,
    }
    assert type(values["retries"]) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("false", False), (" False ", False), ("true", True), (True, True), (False, False)],
)
def test_boolean_inputs(raw: Any, expected: bool) -> None:
    values = dispatch_inputs(INPUTS, {"message": "m", "debug": raw})
    assert values["debug"] is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("1e3", 1000.0),
        (".5", 0.5),
        (2, 2),
        (2.5, 2.5),
        ("12345678901234567890", 1.2345678901234567e19),
    ],
)
def test_number_inputs(raw: Any, expected: float) -> None:
    assert dispatch_inputs(INPUTS, {"message": "m", "ratio": raw})["ratio"] == expected


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({}, "input 'message' is required"),
        (
            {"message": "m", "colour": "red"},
            "unknown input 'colour' (declared: env, debug, retries, message, target, ratio)",
        ),
        (
            {"message": "m", "debug": "yes"},
            "input 'debug': value 'yes' is not a boolean (true or false)",
        ),
        ({"message": "m", "retries": "many"}, "input 'retries': value 'many' is not a number"),
        ({"message": "m", "retries": "nan"}, "is not a number"),
        ({"message": "m", "retries": "inf"}, "is not a number"),
        ({"message": "m", "retries": "1_000"}, "is not a number"),
        ({"message": "m", "retries": "٣"}, "is not a number"),
        ({"message": "m", "retries": True}, "value true is not a number"),
        (
            {"message": "m", "env": "dev"},
            "'dev' is not one of the options: 'staging', 'production'",
        ),
        ({"message": 5}, "input 'message': value 5 is not a string"),
        ({"message": "m", "target": None}, "value null is not a string"),
    ],
)
def test_dispatch_input_errors(given: dict[str, Any], problem: str) -> None:
    with pytest.raises(InputError) as raised:
        dispatch_inputs(INPUTS, given)
    assert any(problem in reported for reported in raised.value.problems)
    assert isinstance(raised.value, ConveyorError)


def test_dispatch_input_errors_are_collected() -> None:
    with pytest.raises(InputError) as raised:
        dispatch_inputs(INPUTS, {"debug": "maybe", "extra": "1"})
    assert raised.value.problems == [
        "unknown input 'extra' (declared: env, debug, retries, message, target, ratio)",
        "input 'debug': value 'maybe' is not a boolean (true or false)",
        "input 'message' is required",
    ]
    assert str(raised.value) == "; ".join(raised.value.problems)


def test_inputs_for_a_trigger_without_inputs() -> None:
    trigger = trigger_with()
    assert dispatch_inputs(trigger, {}) == {}
    with pytest.raises(InputError, match="the workflow declares no inputs"):
        dispatch_inputs(trigger, {"x": "1"})


def test_required_input_with_a_default_uses_it() -> None:
    trigger = trigger_with(InputSpec("level", type="number", required=True, default="2"))
    assert dispatch_inputs(trigger, {}) == {"level": 2}


def test_bad_default_is_reported_as_a_default() -> None:
    trigger = trigger_with(InputSpec("env", type="choice", options=("a", "b"), default="c"))
    with pytest.raises(InputError, match="input 'env': default 'c' is not one of the options"):
        dispatch_inputs(trigger, {})


def test_expression_defaults_are_left_for_the_engine() -> None:
    trigger = trigger_with(
        InputSpec("flag", type="boolean", default="${{ github.event_name == 'push' }}"),
        event="workflow_call",
    )
    assert dispatch_inputs(trigger, {}) == {"flag": "${{ github.event_name == 'push' }}"}


def test_unknown_input_type() -> None:
    trigger = trigger_with(InputSpec("x", type="float"))
    with pytest.raises(InputError, match="input 'x' has unknown type 'float'"):
        dispatch_inputs(trigger, {"x": "1"})
