"""What an expression is evaluated against: the contexts and the job's status.

The evaluator reads nothing else: status functions and `hashFiles` reach it
through this object, never through globals or the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Environment:
    """The contexts (`github`, `env`, `matrix`, `steps`, ...) and the status functions' inputs.

    Context and property names are looked up case-insensitively. `status` is
    what `success()` and `failure()` see ("success" | "failure" | "cancelled");
    `cancelled()` returns `cancelled`; `hash_files` receives `hashFiles()`'s
    patterns and returns the hash (`hashFiles` is an error where it is None).
    """

    contexts: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    status: str = "success"
    cancelled: bool = False
    hash_files: Callable[[Sequence[str]], str] | None = None
