"""Engines that run a Gate's batches: ``local`` (in-process, or a process pool) and ``ray`` (a Ray cluster)."""

ENGINES = ("local", "ray")


def check_engine(engine: str) -> str:
    """``engine`` when it names a known engine; a ValueError naming them otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine
