"""Reading run records from the Prefect API in tests, once the server has written them.

Task runs reach the server's database through its events pipeline, after the task returned: read at
once, a task run can 404 or show an earlier state under load (FIELD_NOTES). Logs are queued by the
client's log worker. So every read of run state polls until the record is there and settled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import TaskRun
from prefect.exceptions import ObjectNotFound
from prefect.logging.handlers import APILogWorker
from prefect.states import State

T = TypeVar("T")
RECORD_WAIT_SECONDS = 120  # a generous bound for a loaded machine; a poll normally ends in well under 1 s


def poll(read: Callable[[SyncPrefectClient], T], ready: Callable[[T], bool] = lambda _: True) -> T:
    """`read(client)` again until it finds the record (no 404) and `ready(record)`; the last answer after
    `RECORD_WAIT_SECONDS`, for the test's own assertion to report."""
    deadline = time.monotonic() + RECORD_WAIT_SECONDS
    with get_client(sync_client=True) as client:
        while True:
            try:
                record = read(client)
            except ObjectNotFound:
                if time.monotonic() > deadline:
                    raise
            else:
                if ready(record) or time.monotonic() > deadline:
                    return record
            time.sleep(0.2)


def recorded_task_run(state: State) -> TaskRun:
    """The task run that ended in `state`, once the server has recorded that final state."""
    task_run_id: UUID | None = state.state_details.task_run_id
    assert task_run_id is not None
    return poll(lambda client: client.read_task_run(task_run_id), lambda run: run.state_type == state.type)


def send_logs() -> None:
    """Send the logs queued by this process to the server (the API writes them before it answers)."""
    APILogWorker.drain_all(timeout=30)
