"""Cron schedules: parsing, matching, the next tick, and the ticks of a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import ConveyorError
from conveyor.workflow.cron import CronError, parse_cron


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("*/7 * * * *", "minutes", (0, 7, 14, 21, 28, 35, 42, 49, 56)),
        ("1-30/5 * * * *", "minutes", (1, 6, 11, 16, 21, 26)),
        ("5/20 * * * *", "minutes", (5, 25, 45)),
        ("0,30,59 * * * *", "minutes", (0, 30, 59)),
        ("0 9-17 * * *", "hours", tuple(range(9, 18))),
        ("0 0 1,15 * *", "days", (1, 15)),
        ("0 0 * JAN,jul,Dec *", "months", (1, 7, 12)),
        ("0 0 * mar-MAY *", "months", (3, 4, 5)),
        ("0 0 * * MON-FRI", "weekdays", (1, 2, 3, 4, 5)),
        ("0 0 * * 7", "weekdays", (0,)),
        ("0 0 * * 0,7", "weekdays", (0,)),
        ("0 0 * * 5-7", "weekdays", (0, 5, 6)),
        ("0 0 * * sun,Sat", "weekdays", (0, 6)),
        ("0 0 * * */2", "weekdays", (0, 2, 4, 6)),
    ],
)
def test_parse_fields(text: str, field: str, values: tuple[int, ...]) -> None:
    assert getattr(parse_cron(text), field) == values


def test_text_is_normalised_whitespace() -> None:
    assert str(parse_cron("  0   12 * *\t* ")) == "0 12 * * *"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("* * * *", "must have 5 fields"),
        ("* * * * * *", "not 6"),
        ("", "not 0"),
        ("@daily", "must have 5 fields"),
        ("60 * * * *", "minute field '60': 60 is outside 0-59"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day-of-month field '0'"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * FOO *", "month field 'FOO': 'FOO' is not a number or a name"),
        ("* * * * 8", "day-of-week field '8'"),
        ("* * * * MONDAY", "day-of-week field"),
        ("*/0 * * * *", "step '0' is not a positive whole number"),
        ("*/x * * * *", "step 'x'"),
        ("5-1 * * * *", "range '5-1' runs backwards"),
        ("1,,2 * * * *", "'' is not a number"),
        ("-1 * * * *", "minute field"),
        ("a * * * *", "'a' is not a number"),
        ("* * * JAN-MON *", "month field"),
        ("? * * * *", "minute field"),
        ("* * L * *", "day-of-month field"),
        ("* * * * 1#2", "day-of-week field"),
        ("١ * * * *", "minute field"),  # an Arabic-Indic digit is not a cron number
        ("9" * 5000 + " * * * *", "minute field"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
    ],
)
def test_invalid_expressions(text: str, message: str) -> None:
    with pytest.raises(CronError) as raised:
        parse_cron(text)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, ConveyorError)


def test_feb_30_with_a_weekday_still_fires_on_the_weekday() -> None:
    # Both day fields restricted: either may match, so Mondays fire.
    schedule = parse_cron("0 0 30 2 MON")
    assert schedule.next_after(utc(2025, 2, 1)) == utc(2025, 2, 3)


@pytest.mark.parametrize(
    ("text", "moment", "expected"),
    [
        ("*/15 * * * *", utc(2025, 1, 1, 10, 30), True),
        ("*/15 * * * *", utc(2025, 1, 1, 10, 31), False),
        ("*/15 * * * *", utc(2025, 1, 1, 10, 30, 59), True),  # seconds are ignored
        ("0 0 * * 7", utc(2025, 11, 30), True),  # a Sunday
        ("0 0 * * 0", utc(2025, 11, 30), True),
        ("0 0 * * 0", utc(2025, 12, 1), False),
        # Both day fields restricted: the 13th OR a Friday.
        ("0 0 13 * FRI", utc(2025, 11, 13), True),  # a Thursday
        ("0 0 13 * FRI", utc(2025, 11, 14), True),  # a Friday
        ("0 0 13 * FRI", utc(2025, 11, 15), False),
        # Day of month written with '*': both must hold.
        ("0 0 */2 * FRI", utc(2025, 11, 14), False),  # a Friday, but the 14th
        ("0 0 */2 * FRI", utc(2025, 11, 21), True),
        ("0 12 * * *", datetime(2025, 1, 1, 12, 0), True),  # naive means UTC
        ("0 12 * * *", datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), True),
    ],
)
def test_matches(text: str, moment: datetime, expected: bool) -> None:
    assert parse_cron(text).matches(moment) is expected


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("* * * * *", utc(2025, 1, 1, 10, 30, 15), utc(2025, 1, 1, 10, 31)),
        ("*/15 * * * *", utc(2025, 1, 1, 10, 30), utc(2025, 1, 1, 10, 45)),
        ("*/15 * * * *", utc(2025, 1, 1, 23, 59), utc(2025, 1, 2)),
        ("0 0 1 1 *", utc(2025, 6, 1), utc(2026, 1, 1)),
        ("0 0 1 1 *", utc(2025, 12, 31, 23, 59), utc(2026, 1, 1)),
        ("0 0 29 2 *", utc(2025, 3, 1), utc(2028, 2, 29)),
        ("0 0 29 2 *", utc(2096, 3, 1), utc(2104, 2, 29)),  # 2100 is not a leap year
        ("0 0 31 * *", utc(2025, 4, 1), utc(2025, 5, 31)),
        ("*/15 9-17 * * MON-FRI", utc(2025, 11, 28, 17, 50), utc(2025, 12, 1, 9)),
        ("30 4 * * 7", utc(2025, 11, 26), utc(2025, 11, 30, 4, 30)),
        ("0 0 13 * FRI", utc(2025, 11, 10), utc(2025, 11, 13)),
        ("59 23 31 12 *", utc(2025, 1, 1), utc(2025, 12, 31, 23, 59)),
        ("0 12 * * *", datetime(2025, 1, 1, 12, 0), utc(2025, 1, 2, 12)),
    ],
)
def test_next_after(text: str, after: datetime, expected: datetime) -> None:
    assert parse_cron(text).next_after(after) == expected


def test_next_after_converts_other_zones_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    tick = parse_cron("0 * * * *").next_after(datetime(2025, 1, 1, 10, 30, tzinfo=paris))
    assert tick == utc(2025, 1, 1, 10)
    assert tick.tzinfo is UTC


def test_next_after_at_the_end_of_the_calendar() -> None:
    with pytest.raises(CronError, match="no tick after"):
        parse_cron("* * * * *").next_after(datetime(9999, 12, 31, 23, 59))
    with pytest.raises(CronError, match="no tick after"):
        parse_cron("0 0 1 1 *").next_after(datetime(9999, 6, 1))


def test_ticks_between_is_half_open() -> None:
    schedule = parse_cron("0 */6 * * *")
    ticks = list(schedule.ticks_between(utc(2025, 1, 1), utc(2025, 1, 2)))
    assert ticks == [utc(2025, 1, 1, 6), utc(2025, 1, 1, 12), utc(2025, 1, 1, 18), utc(2025, 1, 2)]
    assert list(schedule.ticks_between(utc(2025, 1, 1, 1), utc(2025, 1, 1, 5))) == []


def test_ticks_between_is_lazy_over_long_ranges() -> None:
    ticks = parse_cron("* * * * *").ticks_between(utc(2000, 1, 1), utc(3000, 1, 1))
    assert next(ticks) == utc(2000, 1, 1, 0, 1)


_FIELD_ITEMS = {
    "minute": st.sampled_from(["*", "*/5", "*/7", "0", "30", "0-29/3", "15,45", "59"]),
    "hour": st.sampled_from(["*", "*/6", "0", "12", "9-17", "23", "1,13"]),
    "dom": st.sampled_from(["*", "1", "15", "29", "31", "1-7", "*/10"]),
    "month": st.sampled_from(["*", "2", "FEB", "jan,jul", "*/3", "12", "4-6"]),
    "dow": st.sampled_from(["*", "0", "7", "MON-FRI", "sat", "1,3,5"]),
}


@st.composite
def schedules(draw: st.DrawFn) -> str:
    return " ".join(draw(strategy) for strategy in _FIELD_ITEMS.values())


@settings(max_examples=300)
@given(
    schedules(),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2400, 1, 1)),
)
def test_next_after_is_a_later_matching_minute(text: str, moment: datetime) -> None:
    try:
        schedule = parse_cron(text)
    except CronError:
        return  # e.g. "31 in February only"
    tick = schedule.next_after(moment)
    start = moment.replace(tzinfo=UTC)
    assert tick > start
    assert tick.second == 0 and tick.microsecond == 0
    assert schedule.matches(tick)
    # Nothing in between: the minute before the tick either precedes `start` or misses.
    before = tick - timedelta(minutes=1)
    assert before <= start or not schedule.matches(before)


@settings(max_examples=50)
@given(schedules(), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_ticks_between_agrees_with_a_minute_walk(text: str, moment: datetime) -> None:
    try:
        schedule = parse_cron(text)
    except CronError:
        return
    start = moment.replace(second=0, microsecond=0, tzinfo=UTC)
    end = start + timedelta(hours=6)
    walked = []
    t = start + timedelta(minutes=1)
    while t <= end:
        if schedule.matches(t):
            walked.append(t)
        t += timedelta(minutes=1)
    assert list(schedule.ticks_between(start, end)) == walked
