"""The S3 bucket edge against moto's S3 server on 127.0.0.1 (real HTTP, boto3 through the block)."""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta

import boto3
import httpx
import orjson
import polars as pl
import pytest
from moto import settings as moto_settings
from moto.core.responses import ActionAuthenticatorMixin
from moto.server import ThreadedMotoServer
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters

from tasks.lake import open_bucket
from tasks.lake.bucket import BucketError, TransientBucketError
from tasks.lake.curate import DaySpool, csv_bytes, curate_day, curated_prefix, manifest_key, write_tables
from tasks.lake.land import FetchedPage, land_pages
from tasks.lake.normalize import deduplicate, normalize_raw_file
from tasks.lake.s3 import S3Lake
from tasks.schema import TABLES
from tasks.sources.sample import generate_pages
from tests.net import free_port
from tests.prefect_api import recorded_task_run

SECRET = "testing-secret-value"
# Tasks called outside a flow log locally only; that is intended here.
pytestmark = pytest.mark.filterwarnings("ignore:Logger 'prefect.task_runs' attempted to send logs")


def _run_count(state) -> int:
    """How many times Prefect ran the task, as the server recorded it (once it has: see prefect_api)."""
    return recorded_task_run(state).run_count


def _land(lake: S3Lake, day: date, tweets: int = 250) -> list[str]:
    request = {"source": "sample", "query": "q", "fetched_at": "2026-11-24T23:59:59.999Z"}
    pages = (FetchedPage(request=request, body=b) for b in generate_pages(day, "q", tweets))
    return land_pages(lake, "sample", "q", day, pages, pages_per_file=2).keys


def _spool(lake: S3Lake, day: date, raw_keys: list[str], parts: int) -> DaySpool:
    spool = DaySpool(day, parts)
    for key in raw_keys:
        spool.add(normalize_raw_file(lake.read(key), day)[0])
    return spool


def _objects(block: S3Bucket) -> dict[str, int]:
    """Every object in the block's bucket, full keys, listed with a plain boto3 client."""
    client = block.credentials.get_s3_client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=block.bucket_name)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ())}


def test_keys_parquet_csv_and_manifests_in_s3(s3_bucket_block: S3Bucket, day: date) -> None:
    lake = S3Lake(s3_bucket_block)
    raw_keys = _land(lake, day)
    spool = _spool(lake, day, raw_keys, parts=3)
    try:
        frames = dict(spool.part_frames("tweets"))  # before write_tables, which releases the spool
        files = write_tables(lake, spool, TABLES)
    finally:
        spool.cleanup()

    objects = _objects(s3_bucket_block)
    assert all(k.startswith("x/") for k in objects), sorted(objects)[:5]
    assert {k for k in objects if k.startswith("x/raw/sample/")} == {f"x/{k}" for k in raw_keys}
    tweets = files["tweets"]
    assert tweets.rows == 250 and len(tweets.parquet) == 3
    for part, obj in enumerate(tweets.parquet):
        back = pl.read_parquet(io.BytesIO(lake.read(obj.key)))
        assert back.equals(frames[part]), obj.key
    for part, obj in enumerate(tweets.csv):
        stored = lake.read(obj.key)
        assert stored == csv_bytes(frames[part], TABLES["tweets"]), obj.key
        assert pl.read_csv(gzip.decompress(stored)).height == frames[part].height

    bucket = s3_bucket_block.bucket_name
    manifest = orjson.loads(lake.read(manifest_key("tweets", day, "parquet")))
    expected_urls = [f"s3://{bucket}/x/curated/tweets/dt={day}/part-{p:05d}.parquet" for p in range(3)]
    assert [e["url"] for e in manifest["entries"]] == expected_urls
    assert all(e["mandatory"] is True for e in manifest["entries"])
    for entry in manifest["entries"]:
        assert entry["meta"]["content_length"] == objects[entry["url"].removeprefix(f"s3://{bucket}/")]
    assert sum(e["meta"]["record_count"] for e in manifest["entries"]) == 250
    csv_manifest = orjson.loads(lake.read(manifest_key("tweets", day, "csv")))
    assert [e["url"] for e in csv_manifest["entries"]] == [u.replace(".parquet", ".csv.gz") for u in expected_urls]
    all_parts = pl.concat([pl.read_parquet(io.BytesIO(lake.read(o.key))) for o in tweets.parquet])
    assert all_parts.height == deduplicate(all_parts, "tweets").height == 250


def test_rerun_leaves_no_stale_keys(s3_bucket_block: S3Bucket, day: date) -> None:
    lake = S3Lake(s3_bucket_block)
    raw_keys = _land(lake, day, tweets=120)
    for parts in (4, 2):
        spool = _spool(lake, day, raw_keys, parts)
        try:
            files = write_tables(lake, spool, ["tweets"])["tweets"]
        finally:
            spool.cleanup()
    listed = set(lake.list(curated_prefix("tweets", day)))
    assert listed == set(files.keys("parquet") + files.keys("csv"))
    assert len(files.parquet) == 2
    manifest = orjson.loads(lake.read(manifest_key("tweets", day, "parquet")))
    assert [e["url"] for e in manifest["entries"]] == [lake.url(k) for k in files.keys("parquet")]


class StopsServerAfterFirstPart(S3Lake):
    """The real S3 edge; the test stops the S3 server right after the first curated part is stored."""

    server: ThreadedMotoServer | None = None
    first_part: str | None = None

    def write(self, key: str, data: bytes):
        stored = super().write(key, data)
        if key.startswith("curated/") and self.server is not None:
            self.first_part = key
            self.server.stop()
            self.server = None
        return stored


@pytest.fixture
def dedicated_s3(aws_env: None) -> Iterator[tuple[ThreadedMotoServer, int]]:
    """A moto server of this test's own, which the test may stop and start again on the same port."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield server, port
    server.stop()  # a no-op when the test already stopped it


def test_server_stopped_mid_run_retries_then_fails_without_a_half_written_manifest(
    prefect_server: None, dedicated_s3: tuple[ThreadedMotoServer, int], day: date
) -> None:
    server, port = dedicated_s3
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="stopping-lake")
    block = S3Bucket(
        bucket_name="stopping-lake",
        bucket_folder="x",
        credentials=AwsCredentials(
            aws_access_key_id="testing-key-id",
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
            # Few, quick client retries so the test does not wait out the production backoff.
            aws_client_parameters=AwsClientParameters(
                endpoint_url=endpoint, config={"retries": {"mode": "standard", "max_attempts": 2}, "connect_timeout": 1}
            ),
        ),
    )
    lake = StopsServerAfterFirstPart(block)
    raw_keys = _land(lake, day, tweets=200)
    first = curate_day(lake, day, raw_keys, parts=1)  # a complete earlier run of the day
    before = {k: lake.read(k) for k in lake.list("manifests/")}
    assert len(before) == 2 * len(TABLES)

    lake.server = server
    state = curate_day.with_options(retry_delay_seconds=0)(lake, day, raw_keys, parts=3, return_state=True)

    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, TransientBucketError) and "stopping-lake" in str(error)
    assert SECRET not in str(error)

    assert _run_count(state) == 3  # the first attempt and both retries

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        stored = lake.list("")
        # Parts are written as they are encoded, so any table's part may be first: its manifests were
        # removed before the part was written.
        first_table = lake.first_part.split("/")[1]
        for fmt in ("parquet", "csv"):
            assert manifest_key(first_table, day, fmt) not in stored
        for key, old in before.items():
            if key in stored:  # every manifest left is the earlier run's, and what it lists is intact
                assert lake.read(key) == old
                for entry in orjson.loads(old)["entries"]:
                    assert stored[entry["url"].removeprefix("s3://stopping-lake/x/")] == entry["meta"]["content_length"]
        assert first.tables[first_table].rows > 0
    finally:
        server.stop()


@pytest.fixture
def s3_auth(moto_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Turns on moto's IAM checks and yields keys of a user that may read the bucket but not write."""
    kw = {"endpoint_url": moto_server, "region_name": "us-east-1"}
    boto3.client("s3", **kw).create_bucket(Bucket="guarded-lake")
    iam = boto3.client("iam", **kw)
    user = f"lake-reader-{abs(hash(request.node.nodeid)) % 10**8}"
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="read-only",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}],
        }),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
    yield {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def _saved_lake(moto_server: str, name: str, bucket: str, key_id: str, secret: str) -> S3Lake:
    credentials = AwsCredentials(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_server),
    )
    S3Bucket(bucket_name=bucket, bucket_folder="x", credentials=credentials).save(name, overwrite=True)
    lake = open_bucket(S3Bucket.load(name))
    assert isinstance(lake, S3Lake)
    return lake


@pytest.mark.parametrize(
    ("case", "code"),
    [("read-only user", "AccessDenied"), ("wrong secret", "SignatureDoesNotMatch"), ("unknown key", "InvalidAccessKeyId")],
)
def test_auth_errors_fail_at_once_naming_bucket_and_block(
    prefect_server: None, moto_server: str, s3_auth: dict[str, str], case: str, code: str
) -> None:
    key_id, secret = s3_auth["id"], s3_auth["secret"]
    if case == "wrong secret":
        secret = "not-the-secret-of-this-key"
    if case == "unknown key":
        key_id = "TESTUNKNOWNKEY000000"
    lake = _saved_lake(moto_server, "guarded", "guarded-lake", key_id, secret)
    with pytest.raises(BucketError) as caught:
        lake.write("raw/x.json", b"{}")
    message = str(caught.value)
    assert code in message and "'guarded-lake'" in message and "s3-bucket/guarded" in message
    assert secret not in message and s3_auth["secret"] not in message
    assert caught.value.__cause__ is None  # the boto error (with request details) is not chained


def test_no_such_bucket_is_not_retried_by_the_task(prefect_server: None, moto_server: str, aws_env: None, day: date) -> None:
    lake = _saved_lake(moto_server, "missing", "no-such-lake", "testing-key-id", SECRET)
    with pytest.raises(BucketError, match=r"NoSuchBucket.*'no-such-lake'.*s3-bucket/missing"):
        lake.list("raw/")
    state = curate_day(lake, day, ["raw/sample/q/dt=2026-11-24/part-00000.jsonl.gz"], return_state=True)
    assert state.is_failed()
    assert isinstance(state.result(raise_on_failure=False), BucketError)
    assert _run_count(state) == 1


def test_a_shared_link_opens_a_page_as_a_page(lake: S3Lake) -> None:
    """Objects are stored without a content type; the presigned link makes S3 answer with the page's."""
    lake.write("dashboard/index.html", b"<!DOCTYPE html><p>dashboard</p>")
    lake.write("dashboard/assets/plotly.min.js", b"window.Plotly = {};")
    page = httpx.get(lake.share_url("dashboard/index.html", timedelta(hours=1)), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    script = httpx.get(lake.share_url("dashboard/assets/plotly.min.js", timedelta(hours=1)), timeout=10)
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
