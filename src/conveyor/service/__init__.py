"""`conveyor serve`: the API, the scheduler loop, the reaper and cron over one store."""
