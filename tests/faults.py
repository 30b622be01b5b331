"""`python -m tests.faults BOUNDARY [options]`: exactly `python -m flows.daily [options]`, except that the
process stops itself (SIGSTOP) at one stage boundary, for the test to SIGKILL it there (tests/flows/
test_faults.py). The kill then lands at the boundary itself, with no race against a poll of the bucket and
no hook in production code.

A module of its own, because the stage function is wrapped where it is defined, before `flows.daily`
imports it (the test module imports `flows.daily` at once); `runpy` then runs the command line as `-m`
does, wherever its `main` lives.
"""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
from collections.abc import Callable
from typing import Any

# The boundary -> the (module, function) wrapped to stop the process before it runs.
BOUNDARIES: dict[str, tuple[str, str]] = {
    "mid-landing": ("tasks.lake.land", "write_landing"),  # the second query's pages landed, its record unfinished
    "landed": ("tasks.lake.curate", "curate_day"),  # every page landed and checked complete; nothing curated
    "mid-curate": ("tasks.lake.curate", "write_tables"),  # normalized into the spool; no curated file written
    "curated": ("tasks.warehouse", "load_warehouse"),  # curated files and manifests written; nothing loaded
    "mid-load": ("tasks.warehouse.base", "run_merge"),  # tweets committed; the users merge deleted, uncommitted
    "loaded": ("tasks.runs.summary", "publish_summary"),  # loaded, analyzed, dashboard written; no run summary
}


def stop() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def stop_at(boundary: str) -> None:
    """Wrap the boundary's function so that this process stops there."""
    module_name, name = BOUNDARIES[boundary]
    module = importlib.import_module(module_name)
    original = getattr(module, name)

    def stopped_first(*args: Any, **kwargs: Any) -> Any:
        stop()
        return original(*args, **kwargs)

    def merge_stopped_inside(table: Any, sql: Any, run: Callable[[str], Any], staged: int) -> Any:
        """The users merge (the second table: tweets' is committed), stopped after its DELETE, inside
        its transaction."""

        def run_then_stop(statement: str) -> Any:
            result = run(statement)
            if statement.startswith("DELETE"):
                stop()
            return result

        return original(table, sql, run_then_stop if table.name == "users" else run, staged)

    completed: list[str] = []

    def landing_stopped_before_the_second_record(bucket: Any, day: Any, landed: Any) -> None:
        """Stops before the second query's landing record says complete (its pages are in the bucket)."""
        if landed.complete:
            completed.append(landed.query)
            if len(completed) == 2:
                stop()
        original(bucket, day, landed)

    wrappers = {"mid-load": merge_stopped_inside, "mid-landing": landing_stopped_before_the_second_record}
    setattr(module, name, wrappers.get(boundary, stopped_first))


if __name__ == "__main__":
    stop_at(sys.argv[1])
    sys.argv = ["flows.daily", *sys.argv[2:]]
    runpy.run_module("flows.daily", run_name="__main__", alter_sys=True)
