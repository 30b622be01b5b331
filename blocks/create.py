"""Create or update the pipeline's Prefect blocks from environment variables: `python -m blocks.create`.

Saves, with `overwrite=True` so a re-run updates them in place:
- `aws-credentials/x-pipeline`: keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the secret stored as
  a secret), or none at all so boto3 uses the default chain (instance or task role, or temporary keys
  with AWS_SESSION_TOKEN in the run's environment, which are never stored); region from AWS_REGION; S3_ENDPOINT_URL points boto3 at another S3 endpoint (MinIO, moto).
- `s3-bucket/x-lake` from X_LAKE_BUCKET and X_LAKE_FOLDER, using those credentials.
- `secret/x-bearer-token` from X_BEARER_TOKEN, when set.
- `x-pipeline-warehouse/x-warehouse` from WAREHOUSE_KIND, WAREHOUSE_URL, WAREHOUSE_PASSWORD,
  WAREHOUSE_SCHEMA and REDSHIFT_IAM_ROLE_ARN, when WAREHOUSE_KIND is set.
It prints what it saved and never a secret value.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import get_args

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from blocks.warehouse import Warehouse

AWS_CREDENTIALS_BLOCK = "x-pipeline"
LAKE_BLOCK = "x-lake"
BEARER_TOKEN_BLOCK = "x-bearer-token"
WAREHOUSE_BLOCK = "x-warehouse"


class ConfigError(ValueError):
    """The environment does not describe a valid block; the message says which variable to fix."""


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def aws_credentials_from_env(environ: Mapping[str, str]) -> AwsCredentials:
    key_id, secret = _get(environ, "AWS_ACCESS_KEY_ID"), _get(environ, "AWS_SECRET_ACCESS_KEY")
    if bool(key_id) != bool(secret):
        raise ConfigError("set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (default credential chain)")
    if _get(environ, "AWS_SESSION_TOKEN"):
        # Temporary keys expire, and prefect-aws keeps the session token as plain text (visible in the UI
        # and `prefect block inspect`): store none, so each run takes them from its own environment.
        key_id = secret = None
    endpoint = _get(environ, "S3_ENDPOINT_URL")
    return AwsCredentials(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=_get(environ, "AWS_REGION") or _get(environ, "AWS_DEFAULT_REGION"),
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    )


def lake_from_env(environ: Mapping[str, str], credentials: AwsCredentials) -> S3Bucket | None:
    bucket = _get(environ, "X_LAKE_BUCKET")
    if bucket is None:
        return None
    return S3Bucket(bucket_name=bucket, bucket_folder=(_get(environ, "X_LAKE_FOLDER") or "").strip("/"),
                    credentials=credentials)


def bearer_token_from_env(environ: Mapping[str, str]) -> Secret | None:
    token = _get(environ, "X_BEARER_TOKEN")
    return Secret(value=token) if token else None


def warehouse_from_env(environ: Mapping[str, str]) -> Warehouse | None:
    kind = _get(environ, "WAREHOUSE_KIND")
    if kind is None:
        return None
    kinds = get_args(Warehouse.model_fields["kind"].annotation)
    if kind not in kinds:
        raise ConfigError(f"WAREHOUSE_KIND must be one of {', '.join(kinds)}, not {kind!r}")
    fields: dict[str, object] = {"kind": kind}
    url = _get(environ, "WAREHOUSE_URL")
    if url is not None:
        if kind != "duckdb" and _url_password(url):
            raise ConfigError("WAREHOUSE_URL holds a password: put it in WAREHOUSE_PASSWORD (stored as a secret)")
        fields["url"] = url
    if password := _get(environ, "WAREHOUSE_PASSWORD"):
        fields["password"] = password
    if schema := _get(environ, "WAREHOUSE_SCHEMA"):
        fields["db_schema"] = schema
    if role := _get(environ, "REDSHIFT_IAM_ROLE_ARN"):
        fields["iam_role_arn"] = role
    elif kind == "redshift":
        fields["aws_credentials_block"] = AWS_CREDENTIALS_BLOCK  # COPY authorizes with these keys instead
    return Warehouse(**fields)


def _url_password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError as exc:
        raise ConfigError(f"WAREHOUSE_URL is not a SQLAlchemy URL ({exc})") from None


def _save(block: Block, name: str) -> str:
    """Save `block` as `name`; returns `created` or `updated`."""
    slug = f"{block.get_block_type_slug()}/{name}"
    try:
        Block.load(slug, _sync=True)
        existed = True
    except ValueError:
        existed = False
    block.save(name, overwrite=True, _sync=True)
    return f"{'updated' if existed else 'created'} {slug}"


def create_blocks(environ: Mapping[str, str]) -> list[str]:
    """Save every block the environment describes; returns one line per block, free of secret values."""
    # Validate everything before saving anything, so a mistake does not leave a half-updated set.
    credentials = aws_credentials_from_env(environ)
    lake = lake_from_env(environ, credentials)
    bearer = bearer_token_from_env(environ)
    warehouse = warehouse_from_env(environ)
    Warehouse.register_type_and_schema(_sync=True)  # the UI can then offer the type even when unset here

    keys = "static keys" if credentials.aws_access_key_id else "the default AWS credential chain (no keys stored)"
    if _get(environ, "AWS_SESSION_TOKEN"):
        keys += ", as AWS_SESSION_TOKEN marks the keys as temporary"
    endpoint = credentials.aws_client_parameters.endpoint_url
    lines = [
        f"{_save(credentials, AWS_CREDENTIALS_BLOCK)}: {keys}, region {credentials.region_name or '(default)'}"
        + (f", endpoint {endpoint}" if endpoint else "")
    ]
    if lake is not None:
        lines.append(f"{_save(lake, LAKE_BLOCK)}: s3://{lake.bucket_name}/{lake.bucket_folder}".rstrip("/"))
    else:
        lines.append(f"skipped s3-bucket/{LAKE_BLOCK}: X_LAKE_BUCKET is not set")
    if bearer is not None:
        lines.append(f"{_save(bearer, BEARER_TOKEN_BLOCK)}: the X bearer token (hidden)")
    else:
        lines.append(f"skipped secret/{BEARER_TOKEN_BLOCK}: X_BEARER_TOKEN is not set")
    if warehouse is not None:
        shown = warehouse.url if warehouse.kind == "duckdb" else make_url(warehouse.url).render_as_string()
        lines.append(
            f"{_save(warehouse, WAREHOUSE_BLOCK)}: {warehouse.kind} {shown}"
            + (", password set (hidden)" if warehouse.password else "")
            + (f", schema {warehouse.db_schema}" if warehouse.db_schema else "")
            + (", COPY with an IAM role" if warehouse.iam_role_arn else "")
        )
    else:
        lines.append(f"skipped {Warehouse.get_block_type_slug()}/{WAREHOUSE_BLOCK}: WAREHOUSE_KIND is not set")
    return lines


# The blocks the `production` deployment references (prefect.yaml, `production_storage` and `x_token`).
PRODUCTION_BLOCKS = (f"s3-bucket/{LAKE_BLOCK}", f"{Warehouse.get_block_type_slug()}/{WAREHOUSE_BLOCK}",
                     f"secret/{BEARER_TOKEN_BLOCK}")


def missing_production_blocks() -> list[str]:
    missing = []
    for slug in PRODUCTION_BLOCKS:
        try:
            Block.load(slug, _sync=True)
        except ValueError:
            missing.append(slug)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    args = argparse.ArgumentParser(
        prog="python -m blocks.create",
        description="Create or update the X pipeline's Prefect blocks from environment variables "
        "(see README, 'Production'). Safe to re-run.",
    )
    args.add_argument("--check", action="store_true",
                      help="save nothing: check that the blocks the production deployment uses exist")
    if args.parse_args(argv).check:
        if missing := missing_production_blocks():
            print(f"error: the production deployment needs {', '.join(missing)}: set X_LAKE_BUCKET, "
                  "WAREHOUSE_KIND, X_BEARER_TOKEN (README \"Production\") and run `python -m blocks.create`",
                  file=sys.stderr)
            return 1
        print(f"found {', '.join(PRODUCTION_BLOCKS)}")
        return 0
    try:
        lines = create_blocks(os.environ)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
