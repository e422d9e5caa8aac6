"""Engines that run a Gate's batches: ``local`` (in-process, or a process pool) and ``ray`` (a Ray cluster)."""

ENGINES = ("local", "ray")
