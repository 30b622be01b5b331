"""A Prefect block that says which warehouse to load and how to reach it."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class Warehouse(Block):
    """Where the pipeline loads its tables: an embedded DuckDB file, PostgreSQL or Redshift."""

    _block_type_name = "X Pipeline Warehouse"
    _block_type_slug = "x-pipeline-warehouse"
    _description = "Target database of the X pipeline (DuckDB file, PostgreSQL or Amazon Redshift)."

    # Required, with no default: a block reference (`{"$ref": ...}`) in a deployment's parameters must not
    # also validate as a Warehouse of all defaults, or Prefect's schema check finds it ambiguous.
    kind: Literal["duckdb", "postgresql", "redshift"] = Field(
        description="duckdb (a file), postgresql, or redshift"
    )
    url: str = Field(
        default="data/warehouse.duckdb",
        description="DuckDB file path, or a SQLAlchemy URL without the password "
        "(postgresql+psycopg2://user@host:5432/db, redshift+redshift_connector://user@host:5439/db)",
    )
    password: SecretStr | None = Field(default=None, description="Database password (never logged)")
    db_schema: str | None = Field(default=None, description="Schema holding the tables (default: public/main)")
    iam_role_arn: str | None = Field(default=None, description="Redshift COPY authorization by IAM role")
    aws_credentials_block: str | None = Field(
        default=None, description="Name of an AwsCredentials block for COPY when no IAM role is set"
    )
    copy_format: Literal["parquet", "csv"] = Field(
        default="parquet", description="Redshift COPY source: the Parquet manifest (default) or the gzip CSV one"
    )
    copy_accept_invalid_chars: str | None = Field(
        default=None,
        description="Redshift COPY ACCEPTINVCHARS replacement character (unset: invalid UTF-8 fails the load)",
    )
    redshift_table_design: Literal["schema", "auto"] = Field(
        default="schema",
        description="Redshift DISTKEY/SORTKEY from the schema module, or 'auto' to let Redshift choose",
    )
    lock_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="PostgreSQL: how long a statement waits for a lock another session holds before the load "
        "fails with an error naming the table (Redshift has no such setting: statement_timeout_seconds bounds it)",
    )
    statement_timeout_seconds: float = Field(
        default=1800,
        gt=0,
        description="PostgreSQL and Redshift: the longest any one statement (a COPY, a merge, an analysis "
        "query, and on Redshift a wait for a lock) may run before it is cancelled and the run fails",
    )
