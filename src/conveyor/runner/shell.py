"""The shells a `run:` step runs in, as GitHub defines them on Linux runners.

    (none anywhere)  bash -e {0}                               (sh -e {0} without bash)
    bash             bash --noprofile --norc -eo pipefail {0}
    sh               sh -e {0}
    python           python {0}                                (python3 without python)
    pwsh             pwsh -command ". '{0}'"
    powershell       powershell -command ". '{0}'"
    anything else    a template: its first word is the program, `{0}` the script path

The script is written to a file whose extension the interpreter expects
(.sh, .py, .ps1; for a template, the one its program expects, if any).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
from dataclasses import dataclass

from conveyor.errors import ExecutionError
from conveyor.runner.workspace import rewrite

PLACEHOLDER = "{0}"

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "bash": ("bash", "--noprofile", "--norc", "-eo", "pipefail", PLACEHOLDER),
    "sh": ("sh", "-e", PLACEHOLDER),
    "python": ("python", PLACEHOLDER),
    "pwsh": ("pwsh", "-command", f". '{PLACEHOLDER}'"),
    "powershell": ("powershell", "-command", f". '{PLACEHOLDER}'"),
}
_UNSPECIFIED = ("bash", "-e", PLACEHOLDER)
_FALLBACKS = {"python": "python3"}
_EXTENSIONS = {
    "bash": ".sh",
    "sh": ".sh",
    "python": ".py",
    "python3": ".py",
    "pwsh": ".ps1",
    "powershell": ".ps1",
}
# GitHub wraps pwsh/powershell scripts so that errors stop them and the
# script's last exit code becomes the step's.
_POWERSHELL_PROLOGUE = "$ErrorActionPreference = 'stop'\n"
_POWERSHELL_EPILOGUE = (
    "\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }\n"
)


@dataclass(frozen=True)
class ShellCommand:
    """How to run a script: `argv` holds `{0}` where the script path goes.

    `name` is the shell keyword (`bash`, `sh`, `python`, `pwsh`,
    `powershell`) or `custom` for a template.
    """

    name: str
    argv: tuple[str, ...]
    extension: str

    @property
    def is_powershell(self) -> bool:
        return self.name in ("pwsh", "powershell")

    def argv_for(self, script_path: str) -> list[str]:
        """The command line that runs the script at `script_path`."""
        if self.is_powershell:
            # The path sits inside a single-quoted PowerShell string.
            script_path = script_path.replace("'", "''")
        return [arg.replace(PLACEHOLDER, script_path) for arg in self.argv]

    def script_text(self, contents: str) -> str:
        """The file contents that run `contents` in this shell."""
        if self.is_powershell:
            return _POWERSHELL_PROLOGUE + contents + _POWERSHELL_EPILOGUE
        return contents


def resolve_shell(
    shell: str | None, *, default: str | None = None, path: str | None = None
) -> ShellCommand:
    """The command for a step's `shell:`, else `default`, else GitHub's unspecified default.

    Programs are looked up on `path` (a PATH string; None: this process's PATH)
    and put in `argv` by absolute path. Raises ExecutionError for a template
    without `{0}`, an unparsable one, `cmd`, or a program that is not there.
    """
    spec = (shell or "").strip() or (default or "").strip()
    if not spec:
        program = _which("bash", path) or _which("sh", path)
        if program is None:
            raise ExecutionError("no shell found: neither bash nor sh is on PATH")
        return ShellCommand("bash", (program, *_UNSPECIFIED[1:]), ".sh")
    if spec in _KEYWORDS:
        template = _KEYWORDS[spec]
        program = _which(template[0], path) or _which(_FALLBACKS.get(spec, ""), path)
        if program is None:
            raise ExecutionError(f"shell {spec!r}: {template[0]!r} was not found on PATH")
        return ShellCommand(spec, (program, *template[1:]), _EXTENSIONS[spec])
    if spec == "cmd":
        raise ExecutionError("shell 'cmd' is only available on Windows runners")
    return _custom(spec, path)


def _custom(spec: str, path: str | None) -> ShellCommand:
    if PLACEHOLDER not in spec:
        raise ExecutionError(
            f"shell {spec!r} is not a known shell (bash, sh, python, pwsh, powershell) "
            f"nor a template with {PLACEHOLDER} where the script path goes"
        )
    try:
        argv = _split(spec)
    except ValueError as exc:
        raise ExecutionError(f"shell {spec!r} cannot be parsed: {exc}") from None
    program = argv[0]
    if PLACEHOLDER in program:  # the script runs itself
        return ShellCommand("custom", tuple(argv), "")
    found = _which(program, path)
    if found is None:
        raise ExecutionError(f"shell {spec!r}: {program!r} was not found on PATH")
    return ShellCommand(
        "custom", (found, *argv[1:]), _EXTENSIONS.get(os.path.basename(program), "")
    )


@functools.lru_cache(maxsize=64)
def _split(spec: str) -> tuple[str, ...]:
    """`spec`'s words as a POSIX shell splits them (the same few templates come back at
    every step: 17 µs each here)."""
    return tuple(shlex.split(spec))


def write_script(directory: str, contents: str, shell: ShellCommand) -> str:
    """Write `contents` to the step script of `directory` for `shell`; returns its path.

    Steps run one at a time, so each job directory has one script per file
    extension, rewritten for every step (creating a file costs far more than
    truncating one). The file is private to the runner's user (it may hold
    rendered secrets) and executable, for templates that run the script itself.
    """
    path = os.path.join(directory, f"step{shell.extension}")
    data = shell.script_text(contents).encode("utf-8", "surrogateescape")
    try:
        rewrite(path, data, 0o700)
    except OSError as exc:
        raise ExecutionError(f"cannot write the step's script to {directory}: {exc}") from None
    return path


def _which(program: str, path: str | None) -> str | None:
    if not program:
        return None
    return shutil.which(program, path=path)
