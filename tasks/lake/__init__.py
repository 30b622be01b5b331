"""The lake edge: raw pages, curated Parquet/CSV, run records and the dashboard, in one bucket.

`open_bucket` turns the run's bucket block (an S3Bucket, or none for a local folder) into the `Bucket`
every stage writes through (tasks/lake/bucket.py); landing, normalizing and curating live beside it.
"""

from __future__ import annotations

from pathlib import Path

from prefect.filesystems import LocalFileSystem, WritableFileSystem

from tasks.lake.bucket import Bucket, BucketError, LocalBucket, TransientBucketError
from tasks.lake.s3 import S3Lake

__all__ = ["Bucket", "BucketError", "TransientBucketError", "local_bucket", "open_bucket"]


def local_bucket(local_root: Path) -> LocalBucket:
    """The embedded default: the folder `lake` under `local_root`."""
    return LocalBucket(LocalFileSystem(basepath=str((local_root / "lake").resolve())))


def open_bucket(block: WritableFileSystem | None, local_root: Path = Path("data")) -> Bucket:
    """The bucket of a block: S3Bucket (production), LocalFileSystem, or None for `local_root/lake`."""
    if block is None:
        return local_bucket(local_root)
    if isinstance(block, LocalFileSystem):
        return LocalBucket(block)
    if S3Lake.accepts(block):
        return S3Lake(block)
    raise BucketError(f"unsupported bucket block type {type(block).__name__}; use S3Bucket or LocalFileSystem")
