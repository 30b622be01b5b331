"""The bucket edge: one small interface over a Prefect filesystem block.

Prefect's `WritableFileSystem` blocks give `read_path`/`write_path`; the pipeline also needs to list a
prefix (to find a day's raw pages and remove stale part files), to name an object by URL (for
manifests), and conditional writes on one object (create if absent, replace or delete if unchanged) for
the per-day lease (tasks/runs/lease.py). `Bucket` adds those few operations per block type and nothing more.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.states import State


class BucketError(RuntimeError):
    """A bucket operation failed for a reason the user has to fix (names the bucket, never a secret).

    Retrying cannot help (access denied, no such bucket, bad keys), so tasks do not retry it.
    """


class TransientBucketError(RuntimeError):
    """The bucket was unreachable or failing (5xx, throttling, timeouts) after the client's own retries;
    the task's retries may still get through."""


class WriteVerificationError(TransientBucketError):
    """An object read back differs from what was written; writing it again is the remedy."""


def retry_unless_bucket_error(task: object, task_run: object, state: State) -> bool:
    """Prefect `retry_condition_fn`: retry any failure except a `BucketError`, which needs the user."""
    return not isinstance(state.result(raise_on_failure=False), BucketError)


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int


class Bucket:
    """Keys are relative to the block's base path / bucket folder; `/` separates parts."""

    block: WritableFileSystem

    def write(self, key: str, data: bytes) -> StoredObject:
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError

    def list(self, prefix: str) -> dict[str, int]:
        """Every key under `prefix` with its size in bytes."""
        raise NotImplementedError

    def delete(self, keys: list[str]) -> None:
        raise NotImplementedError

    def url(self, key: str) -> str:
        raise NotImplementedError

    def share_url(self, key: str, expires: timedelta) -> str:
        """A URL a browser opens (a presigned https URL on S3), valid for `expires` where that applies."""
        raise NotImplementedError

    # Conditional writes: a tag names one version of an object (S3's ETag; the content's MD5 on a folder).
    def create(self, key: str, data: bytes) -> str | None:
        """Write `key` only if no object has it, atomically; its tag, or None when it already exists."""
        raise NotImplementedError

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object and its tag, or None when there is none."""
        raise NotImplementedError

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        """Overwrite `key` only if it is still the version `tag`; the new tag, or None when it is not."""
        raise NotImplementedError

    def delete_if(self, key: str, tag: str) -> bool:
        """Delete `key` only if it is still the version `tag`; False when it is not (or is gone)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for `key` when the bucket is a local folder (lets DuckDB read in place)."""
        return None

    def replace_prefix(self, prefix: str, written: list[StoredObject]) -> list[str]:
        """Delete keys under `prefix` that this run did not write, so a re-run leaves no stale files."""
        keep = {o.key for o in written}
        stale = sorted(k for k in self.list(prefix) if k not in keep)
        if stale:
            self.delete(stale)
        return stale


class LocalBucket(Bucket):
    def __init__(self, block: LocalFileSystem) -> None:
        self.block = block
        self.root = Path(block.basepath or ".").expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise BucketError(f"key {key!r} escapes the bucket folder {self.root}")
        return path

    def write(self, key: str, data: bytes) -> StoredObject:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, data)
        size = path.stat().st_size
        if size != len(data):
            raise WriteVerificationError(f"{self.url(key)}: wrote {len(data)} bytes, found {size}")
        return StoredObject(key, size)

    def read(self, key: str) -> bytes:
        path = self._path(key)
        if not path.exists():
            raise BucketError(f"{self.url(key)} does not exist")
        return path.read_bytes()

    def list(self, prefix: str) -> dict[str, int]:
        base = self._path(prefix) if prefix else self.root
        search = base if base.is_dir() else base.parent
        if not search.exists():
            return {}
        found = {}
        for path in search.rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found[key] = path.stat().st_size
        return dict(sorted(found.items()))

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def share_url(self, key: str, expires: timedelta) -> str:
        return self.url(key)  # a file on this machine: no expiry

    def create(self, key: str, data: bytes) -> str | None:
        # A hard link of a complete temporary file: atomic and exclusive (also on NFS), and a reader never
        # sees the object empty, as it would between `O_CREAT | O_EXCL` and the write.
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary_name(path)
        try:
            tmp.write_bytes(data)
            os.link(tmp, path)
        except FileExistsError:
            return None
        finally:
            tmp.unlink(missing_ok=True)
        return _tag(data)

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        return data, _tag(data)

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        with self._exclusive(key):
            current = self.read_tagged(key)
            if current is None or current[1] != tag:
                return None
            write_file_atomically(self._path(key), data)
        return _tag(data)

    def delete_if(self, key: str, tag: str) -> bool:
        with self._exclusive(key):
            current = self.read_tagged(key)
            if current is None or current[1] != tag:
                return False
            self._path(key).unlink()
        return True

    @contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        """Compare-and-swap on a folder: an advisory lock on a hidden file beside the object (not listed)
        makes the check and the change one step for every process using this interface."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def describe(self) -> str:
        return f"local folder {self.root}"

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def _tag(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _temporary_name(path: Path) -> Path:
    """Hidden (never listed) and unique per writer, so two runs writing one key never share a temporary file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Readers never see a half-written file, as with S3; concurrent writers: the last rename wins whole."""
    tmp = _temporary_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
