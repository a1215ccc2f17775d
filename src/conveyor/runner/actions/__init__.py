"""`uses:` steps: local composite actions and the built-in actions.

Conveyor fetches nothing from the network: a remote action that is not built
in fails its step with a message saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import ExecutionError

if TYPE_CHECKING:
    from conveyor.runner.executor import JobState
    from conveyor.runner.steps import Scope
    from conveyor.workflow.model import Step

BUILTIN = ("actions/checkout", "actions/upload-artifact", "actions/download-artifact")


async def run_action(
    state: JobState,
    scope: Scope,
    step: Step,
    ctx: Mapping[str, Any],
    step_env: Mapping[str, str],
) -> tuple[str, dict[str, str]]:
    """Run a `uses:` step; -> (outcome, outputs)."""
    uses = (step.uses or "").strip()
    if uses.startswith("./") or uses == ".":
        from conveyor.runner.actions.composite import run_composite

        return await run_composite(state, scope, step, ctx, step_env)
    if uses.startswith("docker://"):
        raise ExecutionError(
            f"{uses}: container actions need a container engine; none is configured"
        )
    name = uses.split("@", 1)[0].lower()
    if name in BUILTIN:
        from conveyor.runner.actions.builtin import run_builtin

        return await run_builtin(name, state, scope, step, ctx)
    raise ExecutionError(
        f"{uses}: remote actions cannot be fetched (Conveyor runs no network actions); "
        "vendor the action into the repository and use it as a local action (uses: ./path)"
    )
