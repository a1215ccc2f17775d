"""The HTTP reporter: batches, order, an unreachable server, a bounded buffer, a lost lease."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from conveyor.runner.assignment import JobOutcome, StepReport
from conveyor.runner.http_channel import Backoff
from conveyor.runner.http_reporter import HttpReporter

from .protocol_server import ProtocolServer

DONE = JobOutcome("success", {})


def quick() -> Backoff:
    return Backoff(0.01, 0.05)


def run(
    test: Callable[[ProtocolServer], Awaitable[None]], server: ProtocolServer | None = None
) -> ProtocolServer:
    server = server or ProtocolServer()

    async def main() -> None:
        try:
            await test(server)
        finally:
            await server.close()

    asyncio.run(main())
    return server


def step(index: int) -> StepReport:
    return StepReport(index, None, f"step {index}", "success", "success", {})


def lines_per_report(server: ProtocolServer) -> list[int]:
    return [
        sum(len(e["lines"]) for e in c.body["events"] if e["type"] == "logs")
        for c in server.reports()
    ]


def test_lines_go_in_batches_of_at_most_100() -> None:
    async def test(server: ProtocolServer) -> None:
        reporter = HttpReporter(server.channel(), "j", 1)
        start = time.monotonic()
        for n in range(250):
            reporter.log(0, f"line {n}")
        await asyncio.sleep(0.4)
        assert lines_per_report(server) == [100, 100, 50]
        first, second, third = (c.at - start for c in server.reports())
        assert first < 0.05 and second < 0.05  # full batches do not wait
        assert 0.05 < third < 0.3  # the rest waits for the interval
        assert await reporter.complete(DONE)

    server = run(test)
    assert server.lines() == [f"line {n}" for n in range(250)]


def test_a_lone_line_waits_about_100_ms() -> None:
    async def test(server: ProtocolServer) -> None:
        reporter = HttpReporter(server.channel(), "j", 1)
        start = time.monotonic()
        reporter.log(None, "hello")
        await asyncio.sleep(0.05)
        assert server.reports() == []
        await asyncio.sleep(0.2)
        (report,) = server.reports()
        assert 0.09 <= report.at - start < 0.2
        assert report.body == {
            "epoch": 1,
            "seq": 1,
            "events": [{"type": "logs", "lines": [[None, "hello"]]}],
        }
        await reporter.complete(DONE)

    run(test)


def test_a_short_job_is_one_report_from_its_start_to_its_end() -> None:
    async def test(server: ProtocolServer) -> None:
        reporter = HttpReporter(server.channel(), "j", 1)
        before = time.time()
        reporter.job_started()
        await reporter.step_started(0, "build", "Build")
        reporter.log(0, "a")
        reporter.log(0, "b")
        await reporter.step_finished(step(0))
        reporter.log(None, "c")
        await reporter.flush()
        assert await reporter.complete(JobOutcome("failure", {"x": "1"}, reason="why"))
        assert server.calls[0].body["events"][1]["at"] >= before

    server = run(test)
    assert server.writes() == ["report"]
    events = server.calls[0].body["events"]
    assert server.events() == ["job_start", "step_start 0", "logs", "step_end 0", "logs", "job_end"]
    assert events[2] == {"type": "logs", "lines": [[0, "a"], [0, "b"]]}
    assert {k: v for k, v in events[3].items() if k != "at"} == {
        "type": "step_end",
        "index": 0,
        "step_id": None,
        "name": "step 0",
        "outcome": "success",
        "conclusion": "success",
        "outputs": {},
    }
    assert events[-1] == {
        "type": "job_end",
        "conclusion": "failure",
        "outputs": {"x": "1"},
        "reason": "why",
    }
    assert server.lines() == ["a", "b", "c"]


def test_an_unreachable_server_gets_everything_once_it_is_back() -> None:
    async def test(server: ProtocolServer) -> None:
        server.reachable = False
        reporter = HttpReporter(server.channel(), "j", 1, backoff=quick)
        reporter.job_started()
        await reporter.step_started(0, None, "one")
        for n in range(30):
            reporter.log(0, f"out {n}")
        await reporter.step_finished(step(0))
        completing = asyncio.create_task(reporter.complete(DONE))
        await asyncio.sleep(0.3)
        assert not completing.done()
        server.reachable = True
        assert await asyncio.wait_for(completing, 2.0)

    server = run(test)
    assert server.refused > 1
    assert server.events() == ["job_start", "step_start 0", "logs", "step_end 0", "job_end"]
    assert server.lines() == [f"out {n}" for n in range(30)]


def test_a_long_job_reports_while_it_runs() -> None:
    async def test(server: ProtocolServer) -> None:
        reporter = HttpReporter(server.channel(), "j", 1)
        start = time.monotonic()
        reporter.job_started()
        await reporter.step_started(0, "build", "Build")
        reporter.log(0, "a")
        await asyncio.sleep(0.3)
        (first,) = server.reports()
        assert 0.09 <= first.at - start < 0.2  # held one interval, no longer
        assert server.events() == ["job_start", "step_start 0", "logs"]
        await reporter.step_finished(step(0))
        await reporter.step_started(1, None, "next")
        for n in range(150):
            reporter.log(1, f"line {n}")  # more than one batch
        await reporter.step_finished(step(1))
        assert await reporter.complete(DONE)

    server = run(test)
    assert lines_per_report(server) == [1, 100, 50]
    assert server.events() == [
        "job_start",
        "step_start 0",
        "logs",
        "step_end 0",
        "step_start 1",
        "logs",
        "logs",
        "step_end 1",
        "job_end",
    ]
    assert server.lines() == ["a", *(f"line {n}" for n in range(150))]


def test_the_buffer_is_bounded_and_says_what_it_dropped() -> None:
    async def test(server: ProtocolServer) -> None:
        server.reachable = False
        reporter = HttpReporter(server.channel(), "j", 1, backoff=quick, max_buffered_chars=1000)
        for n in range(500):
            reporter.log(0, f"line{n:04d}")  # 8 characters each
        await asyncio.sleep(0.1)
        server.reachable = True
        assert await asyncio.wait_for(reporter.complete(DONE), 2.0)

    lines = run(test).lines()
    marker, kept = lines[0], lines[1:]
    assert marker.startswith("##[warning]") and "dropped" in marker
    dropped = int(marker.removeprefix("##[warning]").split()[0])
    # At most one batch was in flight when the cap was reached; the rest fit the cap.
    assert sum(len(line) for line in kept) <= 1000 + 100 * 8
    assert dropped + len(kept) == 500
    assert kept[-1] == "line0499"
    assert kept == sorted(kept)


def test_a_lost_lease_stops_everything_at_once() -> None:
    lost: list[str] = []

    async def test(server: ProtocolServer) -> None:
        server.epoch = 2  # someone else holds the job now
        reporter = HttpReporter(server.channel(), "j", 1, on_lost=lost.append)
        reporter.job_started()
        await reporter.step_started(0, None, "one")
        reporter.log(0, "late")
        await asyncio.sleep(0.2)  # the first report waits one interval
        assert reporter.cancel.is_set() and reporter.ended
        reporter.log(0, "later")
        await reporter.step_finished(step(0))
        assert not await reporter.complete(DONE)
        await asyncio.sleep(0.15)

    server = run(test)
    assert server.writes() == ["report"]
    assert server.events() == ["job_start", "step_start 0", "logs"]
    assert len(lost) == 1
    assert "stale epoch" in lost[0]


def test_a_report_whose_answer_was_lost_goes_again_with_its_number() -> None:
    async def test(server: ProtocolServer) -> None:
        server.unanswered = 1
        reporter = HttpReporter(server.channel(), "j", 1, backoff=quick)
        reporter.job_started()
        reporter.log(None, "once")
        assert await asyncio.wait_for(reporter.complete(DONE), 5.0)

    server = run(test)
    first, again = server.reports()
    assert first.body == again.body  # the same report, the same number: applied once
    assert first.body["seq"] == 1


def test_reports_are_numbered_in_order() -> None:
    async def test(server: ProtocolServer) -> None:
        reporter = HttpReporter(server.channel(), "j", 1)
        for n in range(250):
            reporter.log(0, f"line {n}")
        assert await reporter.complete(DONE)

    server = run(test)
    assert [c.body["seq"] for c in server.reports()] == [1, 2, 3]
