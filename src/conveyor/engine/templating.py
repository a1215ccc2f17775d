"""Rendering structured values the way GitHub's template engine does for a matrix.

Beyond plain rendering: a `${{ insert }}` key merges the mapping it holds into
its parent, and a sequence item that is a lone expression yielding an array
is spliced into the sequence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conveyor.expr import Environment, render_value

_INSERT = re.compile(r"^\$\{\{\s*insert\s*\}\}$")
_LONE = re.compile(r"^\s*\$\{\{.*\}\}\s*$", re.DOTALL)


def render_structure(raw: Any, env: Environment) -> Any:
    if isinstance(raw, Mapping):
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(key, str) and _INSERT.match(key.strip()):
                merged = render_structure(value, env)
                if isinstance(merged, Mapping):
                    out.update(merged)
                continue
            out[str(render_value(key, env))] = render_structure(value, env)
        return out
    if isinstance(raw, list):
        items: list[Any] = []
        for item in raw:
            value = render_structure(item, env)
            if isinstance(item, str) and _LONE.match(item) and isinstance(value, list):
                items.extend(value)
            else:
                items.append(value)
        return items
    return render_value(raw, env)
