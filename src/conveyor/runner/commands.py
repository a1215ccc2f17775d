"""Workflow commands: `::name key=value,...::message` lines in a step's output.

`parse_command` reads one line; a `CommandProcessor` (one per step) acts on
each output line and gathers what the commands set: outputs, exported
environment, PATH entries, masks, annotations and saved state.

Names and property keys are case-insensitive (kept lower-case). Messages are
unescaped `%25` → `%`, `%0D` → CR, `%0A` → LF; property values additionally
`%3A` → `:` and `%2C` → `,`.

Following GitHub's runner, a line that names no known command (`::std::x`)
is ordinary output; while commands are stopped (`::stop-commands::TOKEN`)
every line is output, printed as is, until the line `::TOKEN::`. A command
that cannot be carried out (a disabled `set-env`, `set-output` without a
name) leaves an error in `messages` and marks the step `failed`, as GitHub
fails such a step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

_DATA_ESCAPES = {"%25": "%", "%0D": "\r", "%0A": "\n"}
_PROPERTY_ESCAPES = {**_DATA_ESCAPES, "%3A": ":", "%2C": ","}
_DATA_RE = re.compile("|".join(_DATA_ESCAPES))
_PROPERTY_RE = re.compile("|".join(_PROPERTY_ESCAPES))

_UNSECURE_DISABLED = (
    "The `{name}` command is disabled. Please upgrade to using Environment Files or opt "
    "into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` "
    "environment variable to `true`."
)


@dataclass(frozen=True)
class Command:
    """One parsed workflow command; `name` and property keys are lower-case."""

    name: str
    properties: Mapping[str, str]
    message: str


@dataclass(frozen=True)
class Annotation:
    """A `::notice`, `::warning` or `::error` with its optional position in a file."""

    level: str
    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None
    end_line: int | None = None
    col: int | None = None
    end_column: int | None = None


@dataclass(frozen=True)
class LineResult:
    """What one line of output turned out to be.

    `is_output`: the line belongs in the step's log as printed.
    `masks`: values this line asked to mask; register them before logging anything.
    `messages`: lines for the log that the runner itself writes (`##[error]...`).
    """

    is_output: bool
    command: Command | None = None
    masks: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()


_OUTPUT = LineResult(is_output=True)


def parse_command(line: str) -> Command | None:
    """The command on `line` (leading blanks allowed), or None if it is not `::name ...::`."""
    text = line.lstrip()
    if not text.startswith("::"):
        return None
    end = text.find("::", 2)
    if end < 0:
        return None
    name, _, props = text[2:end].partition(" ")
    if not name:
        return None
    properties: dict[str, str] = {}
    for item in props.split(","):
        key, eq, value = item.strip().partition("=")
        if eq and key and value:
            properties[key.lower()] = _PROPERTY_RE.sub(_unescape_property, value)
    message = _DATA_RE.sub(_unescape_data, text[end + 2 :])
    return Command(name.lower(), MappingProxyType(properties), message)


def _unescape_data(match: re.Match[str]) -> str:
    return _DATA_ESCAPES[match.group()]


def _unescape_property(match: re.Match[str]) -> str:
    return _PROPERTY_ESCAPES[match.group()]


class CommandFailed(Exception):
    """Raised inside the processor when a command cannot be carried out."""


class CommandProcessor:
    """Acts on the workflow commands in one step's output, line by line.

    `allow_unsecure` enables `set-env` and `add-path` (GitHub's
    ACTIONS_ALLOW_UNSECURE_COMMANDS=true); `debug` shows `::debug::` messages.
    `path` lists PATH entries in the order they were added (see
    `conveyor.runner.envfiles` for how they take precedence).
    """

    def __init__(self, *, allow_unsecure: bool = False, debug: bool = False) -> None:
        self.allow_unsecure = allow_unsecure
        self.debug = debug
        self.outputs: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.path: list[str] = []
        self.state: dict[str, str] = {}
        self.masks: list[str] = []
        self.annotations: list[Annotation] = []
        self.failed = False
        self.echo = False
        self._stop_token: str | None = None

    def feed(self, line: str) -> LineResult:
        """Process one output line (without its line break)."""
        if self._stop_token is not None:
            if line.strip() == f"::{self._stop_token}::":
                self._stop_token = None
                return LineResult(is_output=False)
            return _OUTPUT
        command = parse_command(line)
        if command is None:
            return _OUTPUT
        handler = _HANDLERS.get(command.name)
        if handler is None:
            return _OUTPUT
        messages: list[str] = []
        masks_before = len(self.masks)
        if self.echo and command.name != "add-mask":
            messages.append(line)
        try:
            handler(self, command, messages)
        except CommandFailed as exc:
            self.failed = True
            messages.append(f"##[error]Unable to process command '{line.strip()}' successfully.")
            messages.append(f"##[error]{exc}")
        return LineResult(
            is_output=False,
            command=command,
            masks=tuple(self.masks[masks_before:]),
            messages=tuple(messages),
        )

    def _set_output(self, command: Command, messages: list[str]) -> None:
        self.outputs[_required_name(command)] = command.message

    def _save_state(self, command: Command, messages: list[str]) -> None:
        self.state[_required_name(command)] = command.message

    def _set_env(self, command: Command, messages: list[str]) -> None:
        self._require_unsecure(command)
        self.env[_required_name(command)] = command.message

    def _add_path(self, command: Command, messages: list[str]) -> None:
        self._require_unsecure(command)
        if command.message:
            self.path.append(command.message)

    def _require_unsecure(self, command: Command) -> None:
        if not self.allow_unsecure:
            raise CommandFailed(_UNSECURE_DISABLED.format(name=command.name))

    def _add_mask(self, command: Command, messages: list[str]) -> None:
        if command.message.strip():
            self.masks.append(command.message)
        else:
            messages.append(
                "##[warning]Can't add secret mask for empty string in add-mask command."
            )

    def _debug(self, command: Command, messages: list[str]) -> None:
        if self.debug:
            messages.append(f"##[debug]{command.message}")

    def _annotate(self, command: Command, messages: list[str]) -> None:
        props = command.properties
        self.annotations.append(
            Annotation(
                level=command.name,
                message=command.message,
                title=props.get("title"),
                file=props.get("file"),
                line=_int(props.get("line")),
                end_line=_int(props.get("endline")),
                col=_int(props.get("col")),
                end_column=_int(props.get("endcolumn")),
            )
        )
        messages.append(f"##[{command.name}]{command.message}")

    def _group(self, command: Command, messages: list[str]) -> None:
        messages.append(f"##[group]{command.message}")

    def _endgroup(self, command: Command, messages: list[str]) -> None:
        messages.append("##[endgroup]")

    def _stop_commands(self, command: Command, messages: list[str]) -> None:
        token = command.message.strip()
        if not token:
            raise CommandFailed("stop-commands needs a token: `::stop-commands::TOKEN`.")
        self._stop_token = token

    def _echo(self, command: Command, messages: list[str]) -> None:
        value = command.message.strip().lower()
        if value not in ("on", "off"):
            raise CommandFailed(
                "Invalid echo command value. Possible values can be: 'on', 'off'. "
                f"Current value is: '{command.message}'."
            )
        self.echo = value == "on"

    def _ignore(self, command: Command, messages: list[str]) -> None:
        """Problem matchers are accepted but not applied."""


def _required_name(command: Command) -> str:
    name = command.properties.get("name")
    if not name:
        raise CommandFailed(f"Required field 'name' is missing in {command.name} command.")
    return name


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


_HANDLERS = {
    "set-output": CommandProcessor._set_output,
    "save-state": CommandProcessor._save_state,
    "set-env": CommandProcessor._set_env,
    "add-path": CommandProcessor._add_path,
    "add-mask": CommandProcessor._add_mask,
    "debug": CommandProcessor._debug,
    "notice": CommandProcessor._annotate,
    "warning": CommandProcessor._annotate,
    "error": CommandProcessor._annotate,
    "group": CommandProcessor._group,
    "endgroup": CommandProcessor._endgroup,
    "stop-commands": CommandProcessor._stop_commands,
    "echo": CommandProcessor._echo,
    "add-matcher": CommandProcessor._ignore,
    "remove-matcher": CommandProcessor._ignore,
}
