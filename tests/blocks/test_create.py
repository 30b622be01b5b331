"""`python -m blocks.create` against the session's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.settings import PREFECT_API_URL
from prefect_aws import AwsCredentials, S3Bucket

from blocks.create import ConfigError, create_blocks
from blocks.warehouse import Warehouse
from tasks.lake import open_bucket

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "create-test-secret-access-key",
    "X_BEARER_TOKEN": "create-test-bearer-token",
    "WAREHOUSE_PASSWORD": "create-test-warehouse-password",
}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_create_saves_the_blocks_idempotently_without_showing_secrets(prefect_server: None, moto_server: str) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "AWS_ACCESS_KEY_ID": "TESTCREATEKEYID00001",
        "AWS_REGION": "eu-west-1",
        "S3_ENDPOINT_URL": moto_server,
        "X_LAKE_BUCKET": "create-test-lake",
        "X_LAKE_FOLDER": "/x/",
        "WAREHOUSE_KIND": "redshift",
        "WAREHOUSE_URL": "redshift+redshift_connector://loader@cluster.example:5439/dev",
        "WAREHOUSE_SCHEMA": "x_pipeline",
        "REDSHIFT_IAM_ROLE_ARN": "arn:aws:iam::123456789012:role/x-pipeline-copy",
        **SECRETS,
    }
    first = _run([sys.executable, "-m", "blocks.create"], env)
    assert first.returncode == 0, first.stderr
    second = create_blocks(env)  # in-process: the same code, without paying for a second interpreter

    slugs = ["aws-credentials/x-pipeline", "s3-bucket/x-lake", "secret/x-bearer-token", "x-pipeline-warehouse/x-warehouse"]
    for slug in slugs:
        assert any(line.startswith(f"updated {slug}:") for line in second), second
    assert len(first.stdout.splitlines()) == len(second) == 4

    credentials = AwsCredentials.load("x-pipeline")
    assert credentials.aws_secret_access_key.get_secret_value() == SECRETS["AWS_SECRET_ACCESS_KEY"]
    assert credentials.region_name == "eu-west-1"
    assert credentials.aws_client_parameters.endpoint_url == moto_server
    lake = S3Bucket.load("x-lake")
    assert (lake.bucket_name, lake.bucket_folder) == ("create-test-lake", "x")
    assert lake.credentials.aws_access_key_id == "TESTCREATEKEYID00001"
    assert Secret.load("x-bearer-token").get() == SECRETS["X_BEARER_TOKEN"]
    warehouse = Warehouse.load("x-warehouse")
    assert (warehouse.kind, warehouse.db_schema) == ("redshift", "x_pipeline")
    assert warehouse.password.get_secret_value() == SECRETS["WAREHOUSE_PASSWORD"]
    assert warehouse.iam_role_arn == "arn:aws:iam::123456789012:role/x-pipeline-copy"

    prefect = str(Path(sys.executable).with_name("prefect"))
    outputs = [first.stdout + first.stderr, "\n".join(second)]
    inspecting = [
        subprocess.Popen([prefect, "block", "inspect", slug], env=env, cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for slug in slugs
    ]
    for slug, process in zip(slugs, inspecting, strict=True):
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, output
        assert slug.split("/")[1] in output
        outputs.append(output)
    for output in outputs:
        for name, value in SECRETS.items():
            assert value not in output, name


@pytest.mark.parametrize(
    "keys",
    [{}, {"AWS_ACCESS_KEY_ID": "ASIATEMPORARY", "AWS_SECRET_ACCESS_KEY": "temporary", "AWS_SESSION_TOKEN": "token"}],
    ids=["no keys", "temporary keys"],
)
def test_default_credential_chain(prefect_server: None, moto_server: str, keys: dict[str, str]) -> None:
    environ = {"AWS_REGION": "us-east-1", "X_LAKE_BUCKET": "chain-lake", "S3_ENDPOINT_URL": moto_server, **keys}
    lines = create_blocks(environ)
    assert "default AWS credential chain" in lines[0]
    credentials = AwsCredentials.load("x-pipeline")
    assert credentials.aws_access_key_id is None and credentials.aws_secret_access_key is None
    assert any(line.startswith("skipped secret/x-bearer-token") for line in lines)
    assert open_bucket(S3Bucket.load("x-lake")).describe() == "s3://chain-lake"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AWS_ACCESS_KEY_ID": "TESTONLYTHEID"}, "both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({"WAREHOUSE_KIND": "oracle"}, "WAREHOUSE_KIND must be one of"),
        ({"WAREHOUSE_KIND": "postgresql", "WAREHOUSE_URL": "postgresql://u:hunter2@h/db"}, "WAREHOUSE_PASSWORD"),
    ],
)
def test_bad_environment_is_a_clear_error_without_the_secret(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        create_blocks(environ)
    assert "hunter2" not in str(caught.value)
