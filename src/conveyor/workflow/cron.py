"""POSIX cron schedules (`on.schedule[].cron`): parse, match a minute, find the next ticks.

Five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
JAN-DEC) and day of week (0-7 or SUN-SAT; 0 and 7 are both Sunday). Each field
is a comma list of `*`, `N`, `N-M`, each optionally followed by `/STEP`
(`N/STEP` means `N-max/STEP`). Names are case-insensitive.

Day semantics follow Vixie cron: when both day fields are restricted (neither
begins with `*`), a day matches if EITHER matches; otherwise both must.
Times are UTC at minute resolution; naive datetimes are taken as UTC and every
datetime returned is timezone-aware UTC.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime, timedelta

from conveyor.errors import ConveyorError

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_LENGTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # leap years included


class CronError(ConveyorError, ValueError):
    """A cron expression is malformed or can never fire; the message names the field."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number the first name stands for


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day-of-week", 0, 7, _WEEKDAYS, 0),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: the allowed values of each field, sorted (weekday 0 is Sunday)."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    days_star: bool  # the day-of-month field begins with '*'
    weekdays_star: bool  # the day-of-week field begins with '*'

    def __str__(self) -> str:
        return self.text

    def matches(self, dt: datetime) -> bool:
        """Whether the minute containing `dt` is a tick (seconds are ignored)."""
        dt = _utc(dt)
        return (
            dt.minute in self.minutes
            and dt.hour in self.hours
            and dt.month in self.months
            and self._day_matches(dt)
        )

    def next_after(self, dt: datetime) -> datetime:
        """The first tick strictly after `dt`, found by skipping whole months, days and hours."""
        t = _utc(dt).replace(second=0, microsecond=0)
        try:
            t += timedelta(minutes=1)
            while True:
                if t.month not in self.months:
                    t = self._next_month(t)
                    continue
                if not self._day_matches(t):
                    t = _midnight(t) + timedelta(days=1)
                    continue
                if t.hour not in self.hours:
                    hour = _next_in(self.hours, t.hour)
                    if hour is None:
                        t = _midnight(t) + timedelta(days=1)
                        continue
                    t = t.replace(hour=hour, minute=0)
                minute = _next_in(self.minutes, t.minute)
                if minute is None:
                    t = t.replace(minute=0) + timedelta(hours=1)
                    continue
                return t.replace(minute=minute)
        except OverflowError:
            raise CronError(f"cron {self.text!r} has no tick after {dt} in the calendar") from None

    def ticks_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick `t` with `start < t <= end`, in order (lazily: ranges may be long)."""
        end = _utc(end)
        t = self.next_after(start)
        while t <= end:
            yield t
            t = self.next_after(t)

    def _day_matches(self, dt: datetime) -> bool:
        in_days = dt.day in self.days
        in_weekdays = (dt.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def _next_month(self, t: datetime) -> datetime:
        month = _next_in(self.months, t.month + 1)
        year = t.year
        if month is None:
            year, month = year + 1, self.months[0]
        if year > MAXYEAR:
            raise OverflowError
        return datetime(year, month, 1, tzinfo=UTC)


def parse_cron(text: str) -> CronSchedule:
    """Parse a five-field cron expression; raise CronError naming the bad field."""
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"cron {text!r} must have 5 fields (minute hour day-of-month month "
            f"day-of-week), not {len(parts)}"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
    )
    weekdays = {0 if day == 7 else day for day in weekdays}
    schedule = CronSchedule(
        text=" ".join(parts),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=tuple(sorted(days)),
        months=tuple(sorted(months)),
        weekdays=tuple(sorted(weekdays)),
        days_star=parts[2].startswith("*"),
        weekdays_star=parts[4].startswith("*"),
    )
    # With the weekday unrestricted the day of month alone decides; it may not exist.
    if schedule.weekdays_star and not any(
        day <= _MONTH_LENGTHS[month - 1] for month in months for day in days
    ):
        raise CronError(f"cron {text!r} never fires: no chosen month has the chosen days")
    return schedule


def _parse_field(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(item, field, text))
    return values


def _parse_item(item: str, field: _Field, text: str) -> range:
    def fail(reason: str) -> CronError:
        return CronError(f"cron {field.name} field {text!r}: {reason}")

    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        number = _number(step_text)
        if not number:
            raise fail(f"step {step_text!r} is not a positive whole number")
        step = number
    if base == "*":
        return range(field.low, field.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _value(first_text, field, fail)
    if dash:
        last = _value(last_text, field, fail)
    elif slash:
        last = field.high
    else:
        last = first
    if first > last:
        raise fail(f"range {base!r} runs backwards")
    return range(first, last + 1, step)


def _value(text: str, field: _Field, fail: Callable[[str], CronError]) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names.index(upper) + field.name_base
    value = _number(text)
    if value is None:
        raise fail(f"{text!r} is not a number" + (" or a name" if field.names else ""))
    if not field.low <= value <= field.high:
        raise fail(f"{value} is outside {field.low}-{field.high}")
    return value


def _number(text: str) -> int | None:
    """A plain decimal number of at most 6 digits (no signs, no other scripts' digits)."""
    if 0 < len(text) <= 6 and text.isascii() and text.isdigit():
        return int(text)
    return None


def _next_in(values: tuple[int, ...], at_least: int) -> int | None:
    index = bisect_left(values, at_least)
    return values[index] if index < len(values) else None


def _midnight(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
