"""The immutable model of a parsed workflow (and of a composite action).

Values that GitHub evaluates at run time (anything that may hold `${{ }}`) are
kept as plain data (`Raw`: str, int, float, bool, None, dicts and lists of
them) exactly as written; the engine renders them with `conveyor.expr`.
Defaults are applied once, at load; nothing here holds run state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from conveyor.errors import Span

Raw = Any
"""Plain YAML data as written, possibly holding `${{ }}` templates."""

EMPTY: Mapping[str, Any] = MappingProxyType({})

DEFAULT_SHELL = "bash -e {0}"
"""What a `run:` step with no `shell:` anywhere runs (GitHub's Linux default)."""

DEFAULT_JOB_TIMEOUT_MINUTES = 360


@dataclass(frozen=True)
class RunDefaults:
    """`defaults.run` at workflow or job level."""

    shell: str | None = None
    working_directory: str | None = None


@dataclass(frozen=True)
class Step:
    """One entry of `steps:` (in a job or a composite action)."""

    index: int
    span: Span
    id: str | None = None
    name: Raw = None
    if_: Raw = None
    run: str | None = None
    uses: str | None = None
    with_: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)
    env: Mapping[str, Raw] | str = field(default_factory=lambda: EMPTY)
    shell: str | None = None
    working_directory: Raw = None
    continue_on_error: bool | str = False
    timeout_minutes: float | str | None = None
    run_once: bool = False
    """Conveyor's `run-once:` (a job's steps only): once a lease of the run attempt has
    recorded the step's completion, an automatic retry restores it instead of running it."""

    @property
    def display_name(self) -> str:
        """GitHub's default step name when `name:` is absent."""
        if isinstance(self.name, str) and self.name:
            return self.name
        if self.uses:
            return f"Run {self.uses}"
        first = (self.run or "").strip().splitlines()
        return f"Run {first[0]}" if first else f"Step {self.index + 1}"


@dataclass(frozen=True)
class Strategy:
    """`strategy:` — the matrix stays raw: it may be an expression or hold some."""

    matrix: Raw = None
    fail_fast: bool | str = True
    max_parallel: int | str | None = None


@dataclass(frozen=True)
class Container:
    """`container:` or one entry of `services:` (parsed, kept; run where an engine exists)."""

    image: Raw
    span: Span
    env: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)
    ports: tuple[Raw, ...] = ()
    volumes: tuple[Raw, ...] = ()
    options: Raw = None
    credentials: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class Concurrency:
    group: Raw
    cancel_in_progress: bool | str = False


@dataclass(frozen=True)
class Job:
    """One entry of `jobs:` — either steps to run or a reusable workflow (`uses:`)."""

    id: str
    span: Span
    name: Raw = None
    needs: tuple[str, ...] = ()
    runs_on: Raw = None
    if_: Raw = None
    env: Mapping[str, Raw] | str = field(default_factory=lambda: EMPTY)
    defaults: RunDefaults = field(default_factory=RunDefaults)
    strategy: Strategy | None = None
    outputs: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)
    steps: tuple[Step, ...] = ()
    timeout_minutes: float | str = DEFAULT_JOB_TIMEOUT_MINUTES
    continue_on_error: bool | str = False
    container: Container | None = None
    services: Mapping[str, Container] = field(default_factory=lambda: EMPTY)
    concurrency: Concurrency | None = None
    permissions: Raw = None
    environment: Raw = None
    uses: str | None = None
    with_: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)
    secrets: Mapping[str, Raw] | str | None = None


@dataclass(frozen=True)
class InputSpec:
    """An input of workflow_dispatch / workflow_call, or of a composite action."""

    name: str
    type: str = "string"  # string | boolean | number | choice | environment
    description: str | None = None
    required: bool = False
    default: Raw = None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputSpec:
    """An output of a reusable workflow or composite action: `value:` is a template."""

    name: str
    value: Raw = None
    description: str | None = None


@dataclass(frozen=True)
class Trigger:
    """One event under `on:` with its filters (None: the filter is absent)."""

    event: str
    span: Span
    types: tuple[str, ...] | None = None
    branches: tuple[str, ...] | None = None
    branches_ignore: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    tags_ignore: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    paths_ignore: tuple[str, ...] | None = None
    workflows: tuple[str, ...] | None = None
    inputs: Mapping[str, InputSpec] = field(default_factory=lambda: EMPTY)
    outputs: Mapping[str, OutputSpec] = field(default_factory=lambda: EMPTY)
    secrets: Mapping[str, Raw] = field(default_factory=lambda: EMPTY)
    crons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    """A whole workflow file."""

    path: str
    span: Span
    jobs: Mapping[str, Job]
    on: Mapping[str, Trigger] = field(default_factory=lambda: EMPTY)
    name: Raw = None
    run_name: Raw = None
    env: Mapping[str, Raw] | str = field(default_factory=lambda: EMPTY)
    defaults: RunDefaults = field(default_factory=RunDefaults)
    concurrency: Concurrency | None = None
    permissions: Raw = None

    @property
    def display_name(self) -> str:
        return self.name if isinstance(self.name, str) and self.name else self.path


@dataclass(frozen=True)
class Action:
    """An `action.yml`: only composite actions run here; others are parsed and refused."""

    path: str
    span: Span
    using: str
    name: Raw = None
    description: Raw = None
    inputs: Mapping[str, InputSpec] = field(default_factory=lambda: EMPTY)
    outputs: Mapping[str, OutputSpec] = field(default_factory=lambda: EMPTY)
    steps: tuple[Step, ...] = ()
