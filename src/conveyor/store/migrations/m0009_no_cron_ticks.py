"""Version 9: cron ticks are no longer claimed in a table of their own.

A tick's run carries (workflow, schedule, tick) in its idempotency key, and
every server fires every tick: the run's own transaction makes it once. A
server older than this version, still claiming ticks during a rolling
upgrade, fails its claims; the upgraded servers fire those ticks.
"""

NAME = "no_cron_ticks"

SQLITE: tuple[str, ...] = ("DROP TABLE cron_ticks",)
POSTGRES: tuple[str, ...] = ("DROP TABLE cron_ticks",)
