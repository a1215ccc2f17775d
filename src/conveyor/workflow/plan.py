"""The `needs:` graph of a workflow's jobs: a stable topological order, roots and dependants.

`plan(jobs)` is a pure function of the model. Among jobs that are ready at
the same time the order is the file order, so runs are reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.errors import ConveyorError
from conveyor.workflow.model import Job


class PlanError(ConveyorError, ValueError):
    """The jobs' `needs:` do not form a valid graph."""


class UnknownNeedError(PlanError):
    """A job needs a job id that the workflow does not define."""

    def __init__(self, missing: Mapping[str, tuple[str, ...]]) -> None:
        self.missing = dict(missing)
        parts = [
            f"job {job!r} needs unknown job{'s' if len(names) > 1 else ''} "
            + ", ".join(repr(name) for name in names)
            for job, names in missing.items()
        ]
        super().__init__("; ".join(parts))


class CycleError(PlanError):
    """The `needs:` graph has a cycle; `cycle` lists it, first job repeated at the end.

    Read the arrows as "needs": `a -> b -> a` is a job `a` that needs `b`, which needs `a`.
    """

    def __init__(self, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        super().__init__(f"jobs depend on each other in a cycle: {' -> '.join(cycle)}")


@dataclass(frozen=True)
class Plan:
    """The jobs in a valid order, with each job's needs and dependants (file order)."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]
    _dependants: Mapping[str, tuple[str, ...]] = field(repr=False)

    def roots(self) -> tuple[str, ...]:
        """The jobs that need nothing: they can start at once."""
        return tuple(job for job in self.order if not self.needs[job])

    def dependants(self, job_id: str) -> tuple[str, ...]:
        """The jobs that list `job_id` directly in their `needs:`."""
        if job_id not in self._dependants:
            raise KeyError(job_id)
        return self._dependants[job_id]


def plan(jobs: Mapping[str, Job]) -> Plan:
    """Order `jobs` so that each comes after everything it needs.

    Raises UnknownNeedError for a need naming no job, CycleError for a cycle.
    """
    position = {job_id: index for index, job_id in enumerate(jobs)}
    needs = {job_id: tuple(dict.fromkeys(job.needs)) for job_id, job in jobs.items()}
    missing = {
        job_id: unknown
        for job_id, names in needs.items()
        if (unknown := tuple(name for name in names if name not in position))
    }
    if missing:
        raise UnknownNeedError(missing)

    dependants: dict[str, list[str]] = {job_id: [] for job_id in jobs}
    for job_id, names in needs.items():
        for name in names:
            dependants[name].append(job_id)

    waiting = {job_id: len(names) for job_id, names in needs.items()}
    ready = [position[job_id] for job_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    ids = list(jobs)
    order: list[str] = []
    while ready:
        job_id = ids[heapq.heappop(ready)]
        order.append(job_id)
        for dependant in dependants[job_id]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                heapq.heappush(ready, position[dependant])
    if len(order) < len(ids):
        raise CycleError(_find_cycle(needs, set(ids) - set(order), ids))
    return Plan(
        order=tuple(order),
        needs=needs,
        _dependants={job_id: tuple(names) for job_id, names in dependants.items()},
    )


def _find_cycle(
    needs: Mapping[str, tuple[str, ...]], stuck: set[str], ids: list[str]
) -> tuple[str, ...]:
    """A cycle among the `stuck` jobs, starting from the first of them in file order.

    Every stuck job needs at least one other stuck job, so walking such needs
    from any stuck job must come back to a job already on the path.
    """
    path: list[str] = []
    on_path: dict[str, int] = {}
    job_id = next(job for job in ids if job in stuck)
    while job_id not in on_path:
        on_path[job_id] = len(path)
        path.append(job_id)
        job_id = next(name for name in needs[job_id] if name in stuck)
    return (*path[on_path[job_id] :], job_id)
