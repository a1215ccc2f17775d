"""The environment files a step writes: GITHUB_ENV, GITHUB_OUTPUT, GITHUB_STATE, GITHUB_PATH.

GITHUB_ENV, GITHUB_OUTPUT and GITHUB_STATE hold entries of two forms, one
after the other; blank lines between entries are skipped, CRLF line ends are
read as LF:

    NAME=value               the value is the rest of the line ('=' allowed in it)
    NAME<<DELIMITER          a multi-line value: the following lines, verbatim
    line one                 (even ones that look like NAME=value), up to a
    line two                 line that is exactly DELIMITER, joined with LF
    DELIMITER

A later entry for the same name wins. GITHUB_PATH holds one directory per
line.

PATH precedence, for the executor: a directory added later comes before
every directory added earlier, both within one file and across steps (each
step's additions go in front of those of the steps before it); adding a
directory again moves it to the front. All of them come before the PATH the
job started with. `prepend_path` applies that rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.errors import ConveyorError


class EnvFileError(ConveyorError):
    """An environment file a step wrote is malformed; `line` is 1-based."""

    def __init__(self, message: str, line: int, source: str = "environment file") -> None:
        self.line = line
        self.source = source
        super().__init__(f"{source}, line {line}: {message}")


def parse_env_file(text: str, *, source: str = "environment file") -> list[tuple[str, str]]:
    """The (name, value) entries of a GITHUB_ENV/GITHUB_OUTPUT/GITHUB_STATE file, in order.

    `source` names the file in error messages. Raises EnvFileError on a line
    that is neither form, an empty name or delimiter, or a missing delimiter.
    """
    lines = _lines(text)
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        number = i + 1
        i += 1
        if not line.strip():
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
            _check_name(name, line, number, source)
            entries.append((name, value))
            continue
        if heredoc < 0:
            raise EnvFileError(
                f"invalid line {line!r}: expected NAME=value or NAME<<DELIMITER", number, source
            )
        name, delimiter = line[:heredoc], line[heredoc + 2 :]
        _check_name(name, line, number, source)
        if not delimiter:
            raise EnvFileError(f"empty delimiter in {line!r}", number, source)
        try:
            end = lines.index(delimiter, i)
        except ValueError:
            raise EnvFileError(
                f"no line {delimiter!r} closes the value of {name!r}", number, source
            ) from None
        entries.append((name, "\n".join(lines[i:end])))
        i = end + 1
    return entries


def read_path_file(text: str) -> list[str]:
    """The directories of a GITHUB_PATH file in the order written (blank lines skipped)."""
    return [line for line in _lines(text) if line.strip()]


def prepend_path(current: Iterable[str], added: Iterable[str]) -> list[str]:
    """The PATH prefix after a step added `added` (in file order) to `current` (front first)."""
    entries = list(current)
    for directory in added:
        if directory in entries:
            entries.remove(directory)
        entries.insert(0, directory)
    return entries


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _check_name(name: str, line: str, number: int, source: str) -> None:
    if not name:
        raise EnvFileError(f"empty name in {line!r}", number, source)
