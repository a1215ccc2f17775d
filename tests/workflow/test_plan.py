"""The `needs:` graph: stable topological order, roots, dependants, cycles, unknown needs."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import ConveyorError, Span
from conveyor.workflow.model import Job
from conveyor.workflow.plan import CycleError, PlanError, UnknownNeedError, plan


def jobs(**needs: tuple[str, ...] | str) -> dict[str, Job]:
    """Jobs in keyword order; a string value is one need."""
    return {
        job_id: Job(
            id=job_id,
            span=Span("w.yml", line, 3),
            needs=(names,) if isinstance(names, str) else names,
        )
        for line, (job_id, names) in enumerate(needs.items(), start=1)
    }


def test_independent_jobs_keep_file_order() -> None:
    result = plan(jobs(lint=(), test=(), build=()))
    assert result.order == ("lint", "test", "build")
    assert result.roots() == ("lint", "test", "build")


def test_a_job_comes_after_what_it_needs() -> None:
    result = plan(jobs(deploy=("build", "test"), test="build", build=()))
    assert result.order == ("build", "test", "deploy")
    assert result.roots() == ("build",)
    assert result.needs["deploy"] == ("build", "test")


def test_ready_jobs_are_taken_in_file_order() -> None:
    # After `a`, both `c` and `b` are ready; `c` comes first in the file.
    result = plan(jobs(c="a", a=(), b="a", d=("b", "c")))
    assert result.order == ("a", "c", "b", "d")


def test_a_later_root_does_not_jump_ahead_of_an_earlier_ready_job() -> None:
    result = plan(jobs(a=(), b="a", c=()))
    assert result.order == ("a", "b", "c")


def test_dependants_in_file_order() -> None:
    result = plan(jobs(build=(), test="build", docs=(), deploy=("test", "build")))
    assert result.dependants("build") == ("test", "deploy")
    assert result.dependants("deploy") == ()
    with pytest.raises(KeyError):
        result.dependants("nope")


def test_duplicate_needs_count_once() -> None:
    result = plan(jobs(a=(), b=("a", "a")))
    assert result.needs["b"] == ("a",)
    assert result.dependants("a") == ("b",)


def test_empty_workflow() -> None:
    result = plan({})
    assert result.order == ()
    assert result.roots() == ()


@pytest.mark.parametrize(
    ("graph", "cycle"),
    [
        (jobs(a="a"), ("a", "a")),
        (jobs(a="b", b="a"), ("a", "b", "a")),
        (jobs(x=(), a="c", b="a", c="b"), ("a", "c", "b", "a")),
        # `d` is only stuck behind the cycle; the cycle itself is reported.
        (jobs(d="a", a="b", b="a"), ("a", "b", "a")),
    ],
)
def test_cycles_are_named(graph: dict[str, Job], cycle: tuple[str, ...]) -> None:
    with pytest.raises(CycleError) as raised:
        plan(graph)
    assert raised.value.cycle == cycle
    assert " -> ".join(cycle) in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ConveyorError)


def test_unknown_needs_are_all_reported() -> None:
    with pytest.raises(UnknownNeedError) as raised:
        plan(jobs(a="ghost", b=("a", "x", "y")))
    assert raised.value.missing == {"a": ("ghost",), "b": ("x", "y")}
    assert (
        str(raised.value)
        == "job 'a' needs unknown job 'ghost'; job 'b' needs unknown jobs 'x', 'y'"
    )
    assert isinstance(raised.value, PlanError)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Job]:
    """Random acyclic graphs: each job may need only jobs with a smaller number, shuffled."""
    count = draw(st.integers(0, 12))
    names = [f"j{i}" for i in range(count)]
    needs = {
        name: tuple(draw(st.lists(st.sampled_from(names[:i]), max_size=3)) if i else ())
        for i, name in enumerate(names)
    }
    order = draw(st.permutations(names))
    return jobs(**{name: needs[name] for name in order})


@given(dags())
def test_order_respects_every_need(graph: dict[str, Job]) -> None:
    result = plan(graph)
    assert sorted(result.order) == sorted(graph)
    position = {job_id: i for i, job_id in enumerate(result.order)}
    for job_id, job in graph.items():
        assert all(position[need] < position[job_id] for need in job.needs)
        assert all(job_id in result.dependants(need) for need in job.needs)
    assert set(result.roots()) == {j for j, job in graph.items() if not job.needs}


@given(dags(), st.data())
def test_adding_a_back_edge_makes_a_cycle(graph: dict[str, Job], data: st.DataObject) -> None:
    result = plan(graph)
    edges = [(job_id, need) for job_id, job in graph.items() for need in job.needs]
    if not edges:
        return
    job_id, need = data.draw(st.sampled_from(edges))
    cyclic = dict(graph)
    cyclic[need] = Job(id=need, span=graph[need].span, needs=(*graph[need].needs, job_id))
    with pytest.raises(CycleError) as raised:
        plan(cyclic)
    cycle = raised.value.cycle
    assert cycle[0] == cycle[-1]
    for first, second in itertools.pairwise(cycle):
        assert second in cyclic[first].needs
    assert result.order  # the acyclic graph still planned
