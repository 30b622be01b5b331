"""The S3 side of the bucket edge: a prefect-aws `S3Bucket` block behind the `Bucket` interface.

Reads and writes go through boto3's client from the block's `AwsCredentials` (the same client the
block's own methods use), because the pipeline also needs `head_object` to verify sizes and batch
deletes to remove stale part files, which the block does not offer.
"""

from __future__ import annotations

from typing import Any

from prefect_aws import S3Bucket

from tasks.bucket import Bucket, BucketError, StoredObject


class S3Lake(Bucket):
    def __init__(self, block: S3Bucket) -> None:
        self.block = block
        self.bucket_name = block.bucket_name
        self.folder = (block.bucket_folder or "").strip("/")
        self._client: Any = None

    @staticmethod
    def accepts(block: object) -> bool:
        return isinstance(block, S3Bucket)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.block.credentials.get_s3_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.folder}/{key}" if self.folder else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.folder) + 1 :] if self.folder else full_key

    def write(self, key: str, data: bytes) -> StoredObject:
        full = self._key(key)
        self.client.put_object(Bucket=self.bucket_name, Key=full, Body=data)
        size = self.client.head_object(Bucket=self.bucket_name, Key=full)["ContentLength"]
        if size != len(data):
            raise BucketError(f"{self.url(key)}: wrote {len(data)} bytes but the bucket holds {size}")
        return StoredObject(key, size)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket_name, Key=self._key(key))["Body"].read()

    def list(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket_name, Prefix=self._key(prefix)):
            for obj in page.get("Contents", ()):
                found[self._relative(obj["Key"])] = obj["Size"]
        return dict(sorted(found.items()))

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket_name, Delete={"Objects": chunk, "Quiet": True})

    def url(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{self._key(key)}"

    def describe(self) -> str:
        return f"s3://{self.bucket_name}/{self.folder}".rstrip("/")
