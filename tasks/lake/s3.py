"""The S3 side of the bucket edge: a prefect-aws `S3Bucket` block behind the `Bucket` interface.

Reads and writes go through a boto3 client built from the block's `AwsCredentials` session and client
parameters (endpoint, TLS, botocore config), as the block's own methods do, because the pipeline also
needs `head_object` to verify writes and batch deletes to remove stale part files, which the block does
not offer. Transient failures are retried by botocore's "standard" retry mode (exponential backoff with
jitter on 5xx, throttling, connection errors and timeouts); what is left after that is a
`TransientBucketError` the Prefect task may retry. Errors only the user can fix (access denied, no such
bucket, bad keys) become a `BucketError` naming the bucket and the block, which tasks do not retry.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError
from prefect_aws import S3Bucket

from blocks import saved_block_slug
from tasks.lake.bucket import Bucket, BucketError, StoredObject, TransientBucketError, WriteVerificationError

# Used unless the block's `AwsClientParameters.config` says otherwise (its values take precedence).
DEFAULT_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=10,
    read_timeout=60,
    signature_version="s3v4",  # presigned dashboard links: SigV4, which states its expiry (X-Amz-Expires)
)

# What a shared link tells S3 to answer an object as, by extension (the dashboard's pages and script).
SHARED_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

# Error codes that no retry can fix, with what to tell the user (who has to change the block, the bucket
# or the IAM policy). Codes not listed here that come with a 4xx status fail at once too.
PERMANENT_ERROR_CODES = {
    "AccessDenied": "access denied: the credentials lack permission for this operation (see README, IAM)",
    "AllAccessDisabled": "all access to this bucket has been disabled",
    "NoSuchBucket": "the bucket does not exist (check the block's bucket_name and region)",
    "InvalidAccessKeyId": "the access key id is not known to S3 (check the AwsCredentials block)",
    "SignatureDoesNotMatch": "the secret access key does not match the access key id",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "TokenRefreshRequired": "the session token must be refreshed",
    "AuthorizationHeaderMalformed": "the request's region does not match the bucket's region",
    "PermanentRedirect": "the bucket is in another region than the client (set region_name)",
    "InvalidBucketName": "the bucket name is not valid",
    "NoSuchKey": "the object does not exist",
}

# Client errors (4xx) that another attempt may get past; any other 4xx is the request's own fault.
TRANSIENT_CLIENT_ERRORS = {
    "BadDigest",  # the body changed in transit
    "IncompleteBody",
    "OperationAborted",  # a conflicting operation on the bucket is in progress
    "RequestTimeout",
    "RequestLimitExceeded",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
}

T = TypeVar("T")


class S3Lake(Bucket):
    def __init__(self, block: S3Bucket) -> None:
        self.block = block
        self.bucket_name = block.bucket_name
        self.folder = (block.bucket_folder or "").strip("/")
        self._client: Any = None
        self._client_lock = threading.Lock()  # one client, even when several threads ask for it first

    @staticmethod
    def accepts(block: object) -> bool:
        return isinstance(block, S3Bucket)

    @property
    def block_label(self) -> str:
        slug = saved_block_slug(self.block)
        return f"block {slug}" if slug else "an unsaved S3Bucket block"

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                credentials = self.block.credentials
                params = credentials.aws_client_parameters.get_params_override()
                block_config = params.get("config")
                params["config"] = DEFAULT_CLIENT_CONFIG.merge(block_config) if block_config else DEFAULT_CLIENT_CONFIG
                if credentials.region_name:
                    params["region_name"] = credentials.region_name
                self._client = credentials.get_boto3_session().client("s3", **params)
            return self._client

    def _key(self, key: str) -> str:
        return f"{self.folder}/{key}" if self.folder else key

    def _relative(self, full_key: str) -> str:
        return full_key[len(self.folder) + 1 :] if self.folder else full_key

    @contextmanager
    def _errors(self, operation: str, key: str = "") -> Iterator[None]:
        """Translate boto errors into messages naming the bucket, the key and the block (never a secret)."""
        where = f"s3://{self.bucket_name}/{self._key(key)}" if key else self.describe()
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "unknown"
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in PERMANENT_ERROR_CODES or (400 <= status < 500 and code not in TRANSIENT_CLIENT_ERRORS):
                reason = PERMANENT_ERROR_CODES.get(code) or error.get("Message") or "the request was rejected"
                raise BucketError(
                    f"{operation} {where} failed ({code}, HTTP {status}): {reason}; "
                    f"bucket {self.bucket_name!r}, {self.block_label}"
                ) from None
            raise TransientBucketError(
                f"{operation} {where} failed after retries ({code}, HTTP {status}); {self.block_label}"
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise BucketError(
                f"{operation} {where} failed: no usable AWS credentials ({type(exc).__name__}); "
                f"set keys in the AwsCredentials of {self.block_label} or give the machine a role"
            ) from None
        except BotoCoreError as exc:  # connection refused/reset, timeouts: already retried by botocore
            raise TransientBucketError(
                f"{operation} {where} failed after retries ({type(exc).__name__}); {self.block_label}"
            ) from exc

    def _call(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        with self._errors(operation, key):
            return fn()

    def write(self, key: str, data: bytes) -> StoredObject:
        """Put one object, then check it: S3 verifies `Content-MD5` on arrival, the ETag of a plain
        single-part put is that MD5, and `head_object` must report the size written."""
        full = self._key(key)
        md5 = hashlib.md5(data, usedforsecurity=False)
        put = self._call(
            "write",
            key,
            lambda: self.client.put_object(
                Bucket=self.bucket_name, Key=full, Body=data, ContentMD5=base64.b64encode(md5.digest()).decode()
            ),
        )
        etag = str(put.get("ETag", "")).strip('"')
        # With SSE-KMS or SSE-C the ETag is not the MD5 of the content; only compare it otherwise.
        plain_etag = etag and put.get("ServerSideEncryption") != "aws:kms" and "SSECustomerAlgorithm" not in put
        if plain_etag and etag != md5.hexdigest():
            raise WriteVerificationError(
                f"{self.url(key)}: the bucket's ETag {etag} is not the MD5 {md5.hexdigest()} of what was written"
            )
        head = self._call("verify", key, lambda: self.client.head_object(Bucket=self.bucket_name, Key=full))
        size = head["ContentLength"]
        if size != len(data):
            raise WriteVerificationError(f"{self.url(key)}: wrote {len(data)} bytes but the bucket holds {size}")
        return StoredObject(key, size)

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            return self.client.get_object(Bucket=self.bucket_name, Key=self._key(key))["Body"].read()

    def list(self, prefix: str) -> dict[str, int]:
        found: dict[str, int] = {}
        with self._errors("list", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=self._key(prefix)):
                for obj in page.get("Contents", ()):
                    found[self._relative(obj["Key"])] = obj["Size"]
        return dict(sorted(found.items()))

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            result = self._call(
                "delete",
                keys[start],
                lambda chunk=chunk: self.client.delete_objects(
                    Bucket=self.bucket_name, Delete={"Objects": chunk, "Quiet": True}
                ),
            )
            failed = result.get("Errors", [])
            if failed:  # a batch delete answers 200 and lists per-key failures
                codes = sorted({e.get("Code", "unknown") for e in failed})
                error = BucketError if set(codes) & set(PERMANENT_ERROR_CODES) else TransientBucketError
                raise error(
                    f"delete in {self.describe()} failed for {len(failed)} key(s), e.g. {failed[0].get('Key')} "
                    f"({', '.join(codes)}); {self.block_label}"
                )

    # Conditional writes (S3 since 2024: PutObject If-None-Match / If-Match, DeleteObject If-Match); the tag
    # is the object's ETag. A store that ignores these headers would make every call succeed.
    def create(self, key: str, data: bytes) -> str | None:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def read_tagged(self, key: str) -> tuple[bytes, str] | None:
        got = self._conditional("read", key, lambda: self.client.get_object(Bucket=self.bucket_name, Key=self._key(key)))
        return None if got is None else (got["Body"].read(), got["ETag"])

    def replace_if(self, key: str, data: bytes, tag: str) -> str | None:
        return self._conditional_put(key, data, IfMatch=tag)

    def delete_if(self, key: str, tag: str) -> bool:
        deleted = self._conditional(
            "delete", key, lambda: self.client.delete_object(Bucket=self.bucket_name, Key=self._key(key), IfMatch=tag)
        )
        return deleted is not None

    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str | None:
        put = self._conditional(
            "write", key,
            lambda: self.client.put_object(Bucket=self.bucket_name, Key=self._key(key), Body=data, **condition),
        )
        return None if put is None else put["ETag"]

    def _conditional(self, operation: str, key: str, fn: Callable[[], T]) -> T | None:
        """None when the key is not in the state the request expects: its condition failed (412), a
        concurrent conditional write won (409), or there is no such key (404)."""
        with self._errors(operation, key):
            try:
                return fn()
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
                    return None
                raise

    def url(self, key: str) -> str:
        return f"s3://{self.bucket_name}/{self._key(key)}"

    def share_url(self, key: str, expires: timedelta) -> str:
        """A presigned https GET URL: opens in a browser without AWS credentials until it expires (SigV4
        allows at most 7 days; temporary credentials end it sooner, when they expire).

        Objects are written without a content type, which S3 then serves as `binary/octet-stream`, and a
        browser downloads such a page instead of showing it: the URL asks S3 to answer with the type the
        key's extension names (`response-content-type`, part of the signature)."""
        params = {"Bucket": self.bucket_name, "Key": self._key(key)}
        if content_type := SHARED_CONTENT_TYPES.get(PurePosixPath(key).suffix):
            params["ResponseContentType"] = content_type
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires.total_seconds()))

    def describe(self) -> str:
        return f"s3://{self.bucket_name}/{self.folder}".rstrip("/")
