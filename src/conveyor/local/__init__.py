"""Local runs (`conveyor run`): the engine, a temporary store and in-process runners."""
