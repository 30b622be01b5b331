"""Acceptance: the daily flow on blocks saved on the Prefect server, with the lake in moto's S3 server."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import httpx
import orjson
import pytest
from prefect.client.schemas.filters import LogFilter, LogFilterTimestamp
from prefect.settings import PREFECT_API_URL
from pydantic import ValidationError

from blocks.create import create_blocks
from flows.daily import daily
from flows.settings import PipelineSettings
from tests.prefect_api import poll, send_logs

ROOT = Path(__file__).resolve().parents[2]
KEY_ID, SECRET = "TESTFLOWKEYID0000001", "flow-test-secret-access-key"
BUCKET = "daily-flow-lake"


def _objects(endpoint: str) -> dict[str, int]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", ())}


def _server_logs_and_artifacts(since: datetime) -> str:
    send_logs()
    logs = poll(lambda client: client.read_logs(LogFilter(timestamp=LogFilterTimestamp(after_=since))), bool)
    artifacts = poll(lambda client: client.read_artifacts(), bool)
    assert logs and artifacts
    return "\n".join([log.message for log in logs] + [orjson.dumps(a.model_dump(mode="json")).decode() for a in artifacts])


def test_daily_on_s3_blocks_twice_leaves_the_same_objects(
    prefect_server: None, moto_server: str, aws_env: None, tmp_path: Path, day: date, caplog: pytest.LogCaptureFixture
) -> None:
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    env = {
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "S3_ENDPOINT_URL": moto_server,
        "X_LAKE_BUCKET": BUCKET,
        "X_LAKE_FOLDER": "lake",
    }
    create_blocks(env)
    started = datetime.now(UTC)
    caplog.set_level(logging.INFO)

    daily(day=day, settings=PipelineSettings(queries=["#DataEng"], sample_tweets=200, bucket="s3-bucket/x-lake",
                                             local_root=str(tmp_path), allow_sample_data=True))
    first = _objects(moto_server)
    # The second run goes through the command line, as an operator would start it.
    options = ["--day", day.isoformat(), "--query", "#DataEng", "--sample-tweets", "200",
               "--bucket-block", "s3-bucket/x-lake", "--local-root", str(tmp_path), "--allow-sample-data"]
    cli = _cli(*options)
    assert cli.returncode == 0, cli.stderr[-3000:]
    second = _objects(moto_server)

    for kind in ("raw/sample/", "curated/tweets/", "manifests/tweets/", "runs/"):
        assert any(k.startswith(f"lake/{kind}") for k in first), kind
    assert set(second) == set(first)
    data = {k: size for k, size in first.items() if not k.startswith("lake/runs/")}
    assert {k: second[k] for k in data} == data
    manifest = orjson.loads(
        boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
        .get_object(Bucket=BUCKET, Key=f"lake/manifests/tweets/dt={day}.json")["Body"].read()
    )
    assert [e["url"] for e in manifest["entries"]] == [f"s3://{BUCKET}/lake/curated/tweets/dt={day}/part-00000.parquet"]
    assert "s3://daily-flow-lake/lake" in cli.stdout

    # The UI's dashboard link opens in a browser: a presigned https URL on S3 (here moto's http endpoint).
    link = poll(lambda client: client.read_latest_artifacts(), lambda found: any(
        a.key == "x-pipeline-dashboard" for a in found))
    [dashboard] = [a for a in link if a.key == "x-pipeline-dashboard"]
    url = re.search(r"\((http[^)]+)\)", str(dashboard.data))[1]
    assert url.startswith(moto_server) and "X-Amz-Expires=604800" in url and "expires at" in dashboard.description
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>") and str(day) in page.text

    seen = "\n".join(r.getMessage() for r in caplog.records) + cli.stdout + cli.stderr
    assert "landed" in seen
    seen += _server_logs_and_artifacts(started)
    assert SECRET not in seen


def _cli(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.daily", *options], check=False, cwd=ROOT, capture_output=True,
                          env={**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}, text=True, timeout=300)


def test_cli_with_a_missing_bucket_block_ends_with_a_clear_error(prefect_server: None, tmp_path: Path) -> None:
    cli = _cli("--bucket-block", "s3-bucket/no-such-lake", "--local-root", str(tmp_path))
    assert cli.returncode == 2
    last_line = cli.stderr.strip().splitlines()[-1]
    assert last_line.startswith("python -m flows.daily: error: argument --bucket-block: s3-bucket block "
                                "'no-such-lake' was not found"), cli.stderr[-2000:]
    assert "python -m blocks.create" in last_line


def test_production_blocks_with_the_sample_source_are_refused_in_one_line(
    prefect_server: None, s3_bucket_block, tmp_path: Path, day: date
) -> None:
    """Synthetic posts must never reach the production lake or warehouse by a forgotten `--source`."""
    s3_bucket_block.save("refused-lake", overwrite=True)
    cli = _cli("--day", day.isoformat(), "--bucket-block", "s3-bucket/refused-lake", "--local-root", str(tmp_path))
    assert cli.returncode == 1
    assert cli.stdout == "" and len(cli.stderr.strip().splitlines()) == 1, cli.stderr  # nothing ran
    assert cli.stderr.strip() == (
        "error: source 'sample' would write synthetic posts into the production blocks (bucket "
        "s3-bucket/refused-lake): set source to x_api (README \"Production\"), or set allow_sample_data for a "
        "staging setup")
    with pytest.raises(ValidationError, match="source 'sample' would write synthetic posts"):
        PipelineSettings(bucket="s3-bucket/refused-lake", local_root=str(tmp_path))
    assert not any(tmp_path.iterdir()) and not s3_bucket_block.list_objects()
