"""The server's secrets: read from a file at start, kept in memory, never in the database.

A workflow reads them as `${{ secrets.NAME }}`; each job gets them in its
assignment, and the runner masks their values in every log line. The file
holds one `NAME=VALUE` a line (blank lines and `#` comments are skipped;
the value is everything after the first `=`, as written), or, when its name
ends in `.json`, one JSON object of strings, for values that span lines
(keys, certificates). Names follow GitHub's rules: letters, digits and `_`,
not starting with a digit or `GITHUB_`; they match whatever their case.
"""

from __future__ import annotations

import json
import os
import re
import stat

from conveyor.errors import ConveyorError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_BYTES = 1 << 20


class SecretsFileError(ConveyorError):
    """The secrets file cannot be used; the message names the file (and line)."""


def load_secrets(path: str) -> dict[str, str]:
    """The secrets in the file at `path`, by upper-case name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the start
    except OSError as exc:
        raise SecretsFileError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SecretsFileError(f"{path}: the secrets file is not a regular file")
        raw = b""
        while len(raw) <= MAX_BYTES and (chunk := os.read(fd, 1 << 16)):
            raw += chunk
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        raise SecretsFileError(f"{path}: the secrets file is larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SecretsFileError(f"{path}: not UTF-8 (byte {exc.start})") from None
    pairs = _from_json(path, text) if path.endswith(".json") else _from_lines(path, text)
    secrets: dict[str, str] = {}
    for where, name, value in pairs:
        _check_name(where, name)
        if name.upper() in secrets:
            raise SecretsFileError(f"{where}: secret {name!r} is given twice")
        secrets[name.upper()] = value
    return secrets


def readable_by_others(path: str) -> bool:
    """Whether users other than the file's owner may read it (worth a warning)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _from_lines(path: str, text: str) -> list[tuple[str, str, str]]:
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise SecretsFileError(f"{path}:{number}: expected NAME=VALUE")
        pairs.append((f"{path}:{number}", name.strip(), value))
    return pairs


def _from_json(path: str, text: str) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecretsFileError(f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise SecretsFileError(f"{path}: expected a JSON object of secrets by name")
    pairs = []
    for name, value in data.items():
        if not isinstance(value, str):
            raise SecretsFileError(f"{path}: secret {name!r} is not a string")
        pairs.append((path, name, value))
    return pairs


def _check_name(where: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise SecretsFileError(
            f"{where}: {name[:64]!r} is not a secret name (letters, digits and _, "
            "not starting with a digit)"
        )
    if name.upper().startswith("GITHUB_"):
        raise SecretsFileError(f"{where}: secret names may not start with GITHUB_ ({name!r})")
