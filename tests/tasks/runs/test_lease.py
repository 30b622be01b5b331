"""The per-day lease and the bucket's conditional writes, on the local folder and on moto's S3 server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest

import tasks.runs.lease
from tasks.lake.bucket import Bucket, LocalBucket
from tasks.runs.lease import DayBusyError, DayLease, LeaseLostError, LeaseRecord, day_lease, lease_key

T0 = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> Bucket:
    return request.getfixturevalue("local_bucket" if request.param == "local" else "lake")


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_conditional_writes_change_only_the_version_they_name(store: Bucket) -> None:
    first = store.create("locks/k.json", b"one")
    assert first is not None
    assert store.create("locks/k.json", b"two") is None
    assert store.read_tagged("locks/k.json") == (b"one", first)

    assert store.replace_if("locks/k.json", b"three", "not-the-tag") is None
    second = store.replace_if("locks/k.json", b"three", first)
    assert second is not None and second != first
    assert store.read("locks/k.json") == b"three"

    assert store.delete_if("locks/k.json", first) is False
    assert store.delete_if("locks/k.json", second) is True
    assert store.read_tagged("locks/k.json") is None
    assert store.replace_if("locks/k.json", b"four", second) is None
    assert store.delete_if("locks/k.json", second) is False
    assert store.list("locks/") == {}  # nothing left, no lock or temporary file listed


def test_of_concurrent_creates_exactly_one_wins(store: Bucket) -> None:
    tags: list[str | None] = []
    start = threading.Barrier(6)

    def create(n: int) -> None:
        start.wait()
        tags.append(store.create("locks/race.json", f"writer {n}".encode()))

    threads = [threading.Thread(target=create, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [t for t in tags if t is not None]
    assert store.read_tagged("locks/race.json")[1] == winner


def test_a_second_run_of_a_held_day_fails_at_once_naming_the_holder_and_the_expiry(store: Bucket) -> None:
    day = date(2026, 11, 24)
    first = DayLease(store, day, owner="flow run day-2026-11-24 (a1) on host-a pid 1", clock=at(T0))
    first.acquire(wait_seconds=0)
    second = DayLease(store, day, owner="run b", clock=at(T0 + timedelta(minutes=3)))
    with pytest.raises(DayBusyError) as caught:
        second.acquire(wait_seconds=0)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("day 2026-11-24 is being processed by another run: flow run day-2026-11-24 (a1)")
    assert "expires 2026-11-24 06:10:00 UTC" in message and store.url(lease_key(day)) in message
    held = LeaseRecord.from_bytes(store.read(lease_key(day)))
    assert held is not None and held.owner.endswith("host-a pid 1") and held.acquired_at == T0


def test_an_expired_lease_is_taken_over_and_only_its_new_owner_releases_it(store: Bucket) -> None:
    day = date(2026, 11, 24)
    first = DayLease(store, day, owner="run a", seconds=60, clock=at(T0))
    first.acquire(wait_seconds=0)
    assert DayLease(store, day, owner="run b", clock=at(T0 + timedelta(seconds=59))).try_acquire() is not None

    second = DayLease(store, day, owner="run b", clock=at(T0 + timedelta(seconds=61)))
    assert second.try_acquire() is None
    assert first.renew() is False and first.lost_to is not None and first.lost_to.owner == "run b"
    assert first.release() is False
    assert LeaseRecord.from_bytes(store.read(lease_key(day))).owner == "run b"
    assert second.release() is True
    assert store.read_tagged(lease_key(day)) is None


def test_a_renewal_moves_the_expiry_and_keeps_the_lease(store: Bucket) -> None:
    now = [T0]
    lease = DayLease(store, date(2026, 11, 24), owner="run a", seconds=60, clock=lambda: now[0])
    lease.acquire(wait_seconds=0)
    now[0] = T0 + timedelta(seconds=50)
    assert lease.renew() is True
    other = DayLease(store, date(2026, 11, 24), owner="run b", clock=at(T0 + timedelta(seconds=100)))
    assert other.try_acquire().owner == "run a"  # the first expiry has passed, the renewed one has not
    assert lease.release() is True


def test_the_heartbeat_renews_the_lease_while_the_day_runs(local_bucket: LocalBucket) -> None:
    ticks = iter(T0 + timedelta(seconds=n) for n in range(10**6))
    lease = DayLease(local_bucket, date(2026, 11, 24), owner="run a", seconds=60, clock=lambda: next(ticks))
    lease.acquire(wait_seconds=0)
    first_expiry = lease.held.expires_at
    renewed = threading.Event()
    with lease.heartbeat(0.01):
        while not renewed.wait(0.01):
            stored = LeaseRecord.from_bytes(local_bucket.read(lease_key(date(2026, 11, 24))))
            if stored.expires_at > first_expiry:
                renewed.set()
    assert lease.held is not None and lease.release() is True


def test_a_waiting_run_takes_the_lease_once_the_holder_releases_it(
    store: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = date(2026, 11, 24)
    holder = DayLease(store, day, owner="run a")
    holder.acquire(wait_seconds=0)
    waits: list[float] = []

    def holder_ends(seconds: float) -> None:
        waits.append(seconds)
        holder.release()

    monkeypatch.setattr(tasks.runs.lease, "sleep", holder_ends)
    waiting = DayLease(store, day, owner="run b")
    waiting.acquire(wait_seconds=3600, poll_seconds=5)
    assert waits == [5] and waiting.held is not None and waiting.held.owner == "run b"
    assert LeaseRecord.from_bytes(store.read(lease_key(day))).owner == "run b"


def test_an_unreadable_lease_counts_as_expired(local_bucket: LocalBucket) -> None:
    local_bucket.write(lease_key(date(2026, 11, 24)), b"not json")
    lease = DayLease(local_bucket, date(2026, 11, 24), owner="run a")
    assert lease.try_acquire() is None and lease.held is not None


class LosesCreateAnswers(LocalBucket):
    """A create the store applies but whose answer is lost, so the client's retry sees the key exist."""

    def create(self, key: str, data: bytes) -> str | None:
        super().create(key, data)
        return None


def test_a_create_whose_answer_was_lost_still_takes_the_lease(local_bucket: LocalBucket) -> None:
    lease = DayLease(LosesCreateAnswers(local_bucket.block), date(2026, 11, 24), owner="run a")
    assert lease.try_acquire() is None and lease.held is not None
    assert lease.release() is True


def test_day_lease_releases_on_failure(store: Bucket) -> None:
    day = date(2026, 11, 24)
    with pytest.raises(ValueError, match="the day failed"), day_lease(store, day, wait_seconds=0, owner="run a"):
        assert store.read_tagged(lease_key(day)) is not None
        raise ValueError("the day failed")
    assert store.read_tagged(lease_key(day)) is None


def test_a_run_whose_lease_was_taken_over_does_not_end_well(store: Bucket) -> None:
    day = date(2026, 11, 24)
    lost = pytest.raises(LeaseLostError, match="day 2026-11-24: the lease expired and run b took it")
    with lost, day_lease(store, day, wait_seconds=0, owner="run a"):
        later = datetime.now(UTC) + timedelta(hours=1)  # run a stalled beyond its lease
        assert DayLease(store, day, owner="run b", clock=at(later)).try_acquire() is None
    assert LeaseRecord.from_bytes(store.read(lease_key(day))).owner == "run b"
