"""One run per day at a time: a lease object in the bucket, `locks/dt=YYYY-MM-DD.json`.

Two runs of one day at once (a scheduled run overlapping a manual one or a backfill) would delete and
overwrite each other's raw, curated and manifest keys, and both would end well. The lease lives in the
bucket because the runs may share nothing else (other machines, no Prefect server). It is taken with a
conditional create (S3 `If-None-Match: *`, a hard link on a folder), names its owner and expires, so a
crashed run blocks its day only until then: an expired lease is taken over by a compare-and-swap on its
tag (S3 `If-Match`), renewed in the same way by a heartbeat thread (every quarter of the lease), and
released at the end only by its owner. A run that finds the day held waits, then fails with one line.

The expiry is compared with this machine's UTC clock: hosts' clocks must agree within a small part of the
lease (NTP). A run that stalls longer than the lease (a frozen VM) can lose it to another run while it is
still writing: it then fails at the end naming the other run, rather than ending well.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta

import orjson
from prefect.runtime import flow_run

from tasks import run_logger
from tasks.lake.bucket import Bucket, BucketError, TransientBucketError

# Renewed every quarter of it: three renewals may fail (bucket retries included) before it lapses, and a
# crashed run holds its day at most this long.
LEASE_SECONDS = 600.0
# A second run of a day waits for the first (as Prefect's own concurrency limits queue rather than fail),
# but not for ever: a day on embedded defaults takes minutes, a million tweets about a quarter of an hour.
DEFAULT_WAIT_SECONDS = 1800.0
POLL_SECONDS = 10.0
sleep = time.sleep  # the waiting loop's, replaced by tests


class DayBusyError(BucketError):
    """Another run holds the day's lease. A `BucketError` because only the user can settle it (wait for,
    or cancel, the other run): tasks do not retry it and the command line prints it as one line."""


class LeaseLostError(RuntimeError):
    """This run's lease expired and another run took it while this one was still writing."""


def lease_key(day: date) -> str:
    return f"locks/dt={day.isoformat()}.json"


def utc_now() -> datetime:
    return datetime.now(UTC)


def default_owner() -> str:
    """Who holds the lease, for the message another run shows: the flow run if any, the host and pid."""
    where = f"{socket.gethostname()} pid {os.getpid()}"
    return f"flow run {flow_run.name} ({flow_run.id}) on {where}" if flow_run.id else where


@dataclass(frozen=True)
class LeaseRecord:
    owner: str
    token: str  # unique per acquisition, so every write of the lease differs (the local tag is its hash)
    acquired_at: datetime
    expires_at: datetime

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z)

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseRecord | None:
        """None for an unreadable lease (written by something else): it counts as expired."""
        try:
            doc = orjson.loads(data)
            record = cls(str(doc["owner"]), str(doc["token"]), datetime.fromisoformat(doc["acquired_at"]),
                         datetime.fromisoformat(doc["expires_at"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        return record if record.expires_at.tzinfo else None


class DayLease:
    """The lease of one day in one bucket, as one run sees it."""

    def __init__(self, bucket: Bucket, day: date, owner: str | None = None, seconds: float = LEASE_SECONDS,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.bucket, self.day, self.key = bucket, day, lease_key(day)
        self.owner = owner or default_owner()
        self.ttl = timedelta(seconds=seconds)
        self.clock = clock
        self.held: LeaseRecord | None = None
        self.lost = False
        self.lost_to: LeaseRecord | None = None  # the lease found in place of this run's, once lost
        self._tag = ""
        self.logger = run_logger(__name__)
        self.on_lost: Callable[[], object] = lambda: None

    def try_acquire(self) -> LeaseRecord | None:
        """Take the lease if it is free or expired; None when taken, else the live lease that holds it."""
        for _ in range(5):  # each retry means another run changed the lease meanwhile
            now = self.clock()
            mine = LeaseRecord(self.owner, uuid.uuid4().hex, now, now + self.ttl)
            if tag := self.bucket.create(self.key, mine.to_bytes()):
                self.held, self._tag = mine, tag
                return None
            current = self.bucket.read_tagged(self.key)
            if current is None:  # released between the two calls
                continue
            holder = LeaseRecord.from_bytes(current[0])
            if holder is not None and holder.token == mine.token:  # created; the answer was lost and retried
                self.held, self._tag = holder, current[1]
                return None
            if holder is not None and holder.expires_at > now:
                return holder
            if tag := self.bucket.replace_if(self.key, mine.to_bytes(), current[1]):
                self.logger.warning("took over the expired lease of %s from %s (expired %s)", self.day,
                                     holder.owner if holder else "an unreadable lease",
                                     holder.expires_at.isoformat() if holder else "-")
                self.held, self._tag = mine, tag
                return None
        raise TransientBucketError(f"the lease {self.bucket.url(self.key)} changed on every attempt to take it")

    def acquire(self, wait_seconds: float = DEFAULT_WAIT_SECONDS, poll_seconds: float = POLL_SECONDS) -> None:
        """Take the lease, waiting up to `wait_seconds` for another run to end; else `DayBusyError`."""
        deadline = time.monotonic() + wait_seconds
        while (holder := self.try_acquire()) is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DayBusyError(
                    f"day {self.day} is being processed by another run: {holder.owner} holds its lease "
                    f"{self.bucket.url(self.key)} (since {holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC, expires "
                    f"{holder.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed); waited {wait_seconds:g} s "
                    "(lease_wait_seconds)"
                )
            self.logger.info("day %s is held by %s until %s; waiting up to %.0f s more", self.day, holder.owner,
                              holder.expires_at.isoformat(), left)
            sleep(min(poll_seconds, left))

    def renew(self) -> bool:
        """Push the expiry one lease ahead, only if the lease is still this run's; False when it is not."""
        if self.held is None:
            return False
        renewed = replace(self.held, expires_at=self.clock() + self.ttl)
        if tag := self.bucket.replace_if(self.key, renewed.to_bytes(), self._tag):
            self.held, self._tag = renewed, tag
            return True
        return self._still_mine()

    def release(self) -> bool:
        """Delete the lease only if it is still this run's; False when another run holds it now."""
        while self.held is not None:
            # Gone after a failed delete: a retried delete whose first attempt went through.
            if self.bucket.delete_if(self.key, self._tag) or self.bucket.read_tagged(self.key) is None:
                self.held = None
                return True
            self._still_mine()
        return False

    def _still_mine(self) -> bool:
        """After a failed conditional write: the lease is still this run's (with another tag) when the bucket
        applied an earlier attempt whose answer was lost; else it is lost, to the run named in it, if any."""
        current = self.bucket.read_tagged(self.key)
        record = LeaseRecord.from_bytes(current[0]) if current else None
        if current and record and self.held and record.token == self.held.token:
            self.held, self._tag = record, current[1]
            return True
        self.lost, self.lost_to, self.held = True, record, None
        return False

    def holder_of_lost(self) -> str:
        return self.lost_to.owner if self.lost_to else "another run (since released)"

    def lost_error(self) -> LeaseLostError:
        return LeaseLostError(f"day {self.day}: the lease expired and {self.holder_of_lost()} took it while this "
                              "run was writing; this run stopped, and the day may mix both runs' files: run it again")

    def confirm(self) -> None:
        """Renew the lease, or raise `LeaseLostError` when it is no longer this run's: called before each
        stage that rewrites the day's files, rows or record of success, so a run that stalled past its
        lease (a paused machine) stops there instead of overwriting what the run that took over wrote."""
        if not self.renew():
            self.lost = True
            self.on_lost()
            raise self.lost_error()

    @contextmanager
    def heartbeat(self, every: float) -> Iterator[None]:
        """Renew the lease every `every` seconds on a thread while the body runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    if not self.renew():
                        self.logger.error("lost the lease of %s to %s", self.day, self.holder_of_lost())
                        return
                except (BucketError, TransientBucketError) as exc:  # the next beat may get through
                    self.logger.warning("could not renew the lease of %s: %s", self.day, exc)

        thread = threading.Thread(target=beat, name=f"lease-{self.day}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@contextmanager
def day_lease(bucket: Bucket, day: date, wait_seconds: float = DEFAULT_WAIT_SECONDS, owner: str | None = None,
              seconds: float = LEASE_SECONDS, on_lost: Callable[[], object] = lambda: None) -> Iterator[DayLease]:
    """Hold the day's lease while the body runs (renewed by a heartbeat), released after it, also on failure.

    Fails with `LeaseLostError` (from `confirm` in the body, or after a body that ended well) if another run
    took the lease meanwhile: the day may then mix both runs' files, and must not pass for a good run;
    `on_lost` runs first (the flow withdraws the day's record of success, so catch-up rebuilds the day).
    """
    lease = DayLease(bucket, day, owner, seconds)
    lease.on_lost = on_lost
    lease.acquire(wait_seconds)
    try:
        with lease.heartbeat(seconds / 4):
            yield lease
    finally:
        try:
            lease.release()
        except (BucketError, TransientBucketError) as exc:
            lease.logger.warning("could not release the lease of %s (it expires by itself): %s", day, exc)
    if lease.lost:
        on_lost()
        raise lease.lost_error()
