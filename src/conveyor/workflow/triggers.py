"""Which `on:` trigger an event fires (GitHub's filter semantics), and typed dispatch inputs.

Filter rules, as GitHub documents them:

- `push`: `branches`/`branches-ignore` test the names of `refs/heads/*`,
  `tags`/`tags-ignore` those of `refs/tags/*`. With only branch filters a
  tag push does not match, and the other way round; with neither, every ref
  matches. Path filters are not evaluated for tag pushes.
- `paths`: the event matches if ANY changed path is selected; `paths-ignore`:
  it is skipped only if ALL changed paths are ignored (so an empty change set
  is skipped). Unknown changed paths (None) pass both filters.
- `pull_request` / `pull_request_target`: the branch filters test the BASE
  branch; the default activity types are opened, synchronize and reopened.
- Any event with `types:` matches only those activities (`payload.action`);
  `schedule` matches its crons, `workflow_run` its `workflows:` names and the
  head branch of the run that completed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.workflow.glob import any_match, match_filters
from conveyor.workflow.model import EMPTY, InputSpec, Trigger

PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
DEFAULT_PULL_REQUEST_TYPES = ("opened", "synchronize", "reopened")
PUSH_COMMITS_LIMIT = 2048
"""GitHub lists at most this many commits in a push payload; a full list may be cut short."""

_BRANCH_PREFIX = "refs/heads/"
_TAG_PREFIX = "refs/tags/"
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ZERO_VALUES: Mapping[str, Any] = {
    "string": "",
    "choice": "",
    "environment": "",
    "boolean": False,
    "number": 0,
}


class EventError(ConveyorError, ValueError):
    """An event payload lacks a field the trigger rules need, or has it in the wrong shape."""


class InputError(ConveyorError):
    """Dispatch or call inputs do not fit the inputs the workflow declares."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Event:
    """Something that may start workflows.

    `ref` is the ref the branch and tag filters test: the pushed ref for
    `push`, `refs/heads/<base>` for pull requests. `changed_paths` is None
    when unknown, which lets every path filter pass.
    """

    name: str
    payload: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    ref: str | None = None
    changed_paths: Sequence[str] | None = None

    @property
    def action(self) -> str | None:
        """The activity type (`payload.action`), if the event has one."""
        action = self.payload.get("action")
        return action if isinstance(action, str) else None

    @classmethod
    def from_push(cls, payload: Mapping[str, Any]) -> Event:
        """A push: the ref from `ref`, changed paths from the commits' added/modified/removed."""
        ref = payload.get("ref")
        if not isinstance(ref, str) or not ref:
            raise EventError("push payload has no 'ref' string")
        return cls("push", payload, ref, _changed_paths(payload.get("commits")))

    @classmethod
    def from_pull_request(
        cls,
        payload: Mapping[str, Any],
        *,
        name: str = "pull_request",
        changed_paths: Sequence[str] | None = None,
    ) -> Event:
        """A pull request event: `ref` is its base branch. The payload lists no files, so
        the caller passes `changed_paths` when it knows them."""
        if name not in PULL_REQUEST_EVENTS:
            raise EventError(f"{name!r} is not a pull request event")
        pull_request = payload.get("pull_request")
        base = pull_request.get("base") if isinstance(pull_request, Mapping) else None
        base_ref = base.get("ref") if isinstance(base, Mapping) else None
        if not isinstance(base_ref, str) or not base_ref:
            raise EventError(f"{name} payload has no 'pull_request.base.ref' string")
        if not isinstance(payload.get("action"), str):
            raise EventError(f"{name} payload has no 'action' string")
        return cls(name, payload, _BRANCH_PREFIX + base_ref, changed_paths)


def matches(workflow_on: Mapping[str, Trigger], event: Event) -> Trigger | None:
    """The trigger of `workflow_on` that `event` fires, or None when the workflow does not run."""
    trigger = workflow_on.get(event.name)
    if trigger is None or not _types_match(trigger, event):
        return None
    if event.name == "push":
        accepted = _push_matches(trigger, event)
    elif event.name in PULL_REQUEST_EVENTS:
        accepted = _branch_matches(trigger, _strip(event.ref, _BRANCH_PREFIX)) and _paths_match(
            trigger, event.changed_paths
        )
    elif event.name == "workflow_run":
        accepted = _workflow_run_matches(trigger, event.payload)
    elif event.name == "schedule":
        cron = event.payload.get("schedule")
        accepted = cron is None or cron in trigger.crons
    else:
        accepted = True
    return trigger if accepted else None


def dispatch_inputs(trigger: Trigger, given: Mapping[str, Any]) -> dict[str, Any]:
    """The typed `inputs` context for a workflow_dispatch or workflow_call.

    Every declared input gets a value: the given one, else its default, else
    GitHub's zero value ("" / false / 0). Values are coerced to the declared
    type (`"TRUE"` → True, `"42"` → 42, `"1.5"` → 1.5); a choice must be one
    of its options. Defaults holding `${{` are left for the engine to render.
    Raises InputError listing every problem at once.
    """
    problems = [
        f"unknown input {name!r}" + _expected(trigger.inputs)
        for name in given
        if name not in trigger.inputs
    ]
    values: dict[str, Any] = {}
    for name, spec in trigger.inputs.items():
        if spec.type not in _ZERO_VALUES:
            problems.append(f"input {name!r} has unknown type {spec.type!r}")
            continue
        if name in given:
            raw, origin = given[name], "value"
        elif spec.default is not None:
            raw, origin = spec.default, "default"
            if isinstance(raw, str) and "${{" in raw:
                values[name] = raw
                continue
        elif spec.required:
            problems.append(f"input {name!r} is required")
            continue
        else:
            values[name] = _ZERO_VALUES[spec.type]
            continue
        try:
            values[name] = _coerce(spec, raw)
        except ValueError as error:
            problems.append(f"input {name!r}: {origin} {error}")
    if problems:
        raise InputError(problems)
    return values


def _types_match(trigger: Trigger, event: Event) -> bool:
    types = trigger.types
    if types is None and event.name in PULL_REQUEST_EVENTS:
        types = DEFAULT_PULL_REQUEST_TYPES
    return types is None or event.action in types


def _push_matches(trigger: Trigger, event: Event) -> bool:
    branch_filtered = trigger.branches is not None or trigger.branches_ignore is not None
    tag_filtered = trigger.tags is not None or trigger.tags_ignore is not None
    ref = event.ref or ""
    if ref.startswith(_BRANCH_PREFIX):
        if branch_filtered:
            selected = _branch_matches(trigger, ref[len(_BRANCH_PREFIX) :])
        else:
            selected = not tag_filtered
        return selected and _paths_match(trigger, event.changed_paths)
    if ref.startswith(_TAG_PREFIX):
        if tag_filtered:
            return _passes(ref[len(_TAG_PREFIX) :], trigger.tags, trigger.tags_ignore)
        return not branch_filtered
    return not (branch_filtered or tag_filtered) and _paths_match(trigger, event.changed_paths)


def _branch_matches(trigger: Trigger, branch: str | None) -> bool:
    if trigger.branches is None and trigger.branches_ignore is None:
        return True
    return branch is not None and _passes(branch, trigger.branches, trigger.branches_ignore)


def _passes(name: str, include: Sequence[str] | None, ignore: Sequence[str] | None) -> bool:
    if include is not None and not match_filters(include, name):
        return False
    return ignore is None or not match_filters(ignore, name)


def _paths_match(trigger: Trigger, changed: Sequence[str] | None) -> bool:
    if changed is None:
        return True
    if trigger.paths is not None and not any_match(trigger.paths, changed):
        return False
    ignore = trigger.paths_ignore
    return ignore is None or not all(match_filters(ignore, path) for path in changed)


def _workflow_run_matches(trigger: Trigger, payload: Mapping[str, Any]) -> bool:
    workflow = payload.get("workflow")
    name = workflow.get("name") if isinstance(workflow, Mapping) else None
    if trigger.workflows is not None and name not in trigger.workflows:
        return False
    run = payload.get("workflow_run")
    branch = run.get("head_branch") if isinstance(run, Mapping) else None
    return _branch_matches(trigger, branch if isinstance(branch, str) else None)


def _changed_paths(commits: Any) -> tuple[str, ...] | None:
    """The union of the commits' changes; None when the payload cannot tell them all."""
    if commits is None:
        return None
    if not isinstance(commits, list):
        raise EventError("push payload 'commits' must be a list")
    # An empty list (a new branch, a force push) or a truncated one says
    # nothing about the diff GitHub would compute from git.
    if not commits or len(commits) >= PUSH_COMMITS_LIMIT:
        return None
    paths: dict[str, None] = {}
    for commit in commits:
        if not isinstance(commit, Mapping):
            raise EventError("push payload 'commits' must hold objects")
        for key in ("added", "modified", "removed"):
            listed = commit.get(key) or []
            if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
                raise EventError(f"push payload 'commits[].{key}' must be a list of paths")
            paths.update(dict.fromkeys(listed))
    return tuple(paths)


def _strip(ref: str | None, prefix: str) -> str | None:
    return ref[len(prefix) :] if ref is not None and ref.startswith(prefix) else None


def _coerce(spec: InputSpec, raw: Any) -> Any:
    """`raw` as the input's type; ValueError (completing "<origin> ...") when it cannot be."""
    if spec.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise ValueError(f"{_show(raw)} is not a boolean (true or false)")
    if spec.type == "number":
        return _number(raw)
    if not isinstance(raw, str):
        raise ValueError(f"{_show(raw)} is not a string")
    if spec.type == "choice" and raw not in spec.options:
        options = ", ".join(repr(option) for option in spec.options)
        raise ValueError(f"{raw!r} is not one of the options: {options}")
    return raw


def _number(raw: Any) -> int | float:
    number: int | float = math.nan
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if _INTEGER.fullmatch(text):
            number = int(text)
        elif _DECIMAL.fullmatch(text):
            number = float(text)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{_show(raw)} is not a number")
    return number


def _show(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return "null" if raw is None else repr(raw)


def _expected(inputs: Mapping[str, InputSpec]) -> str:
    if not inputs:
        return " (the workflow declares no inputs)"
    return " (declared: " + ", ".join(inputs) + ")"
