"""The pipeline's parameters, defined once: the flows take them as one typed model, the Run form in the
Prefect UI shows their titles and descriptions (blocks as pickers), and the CLI is built from them.

`StorageSettings` says where a run keeps its data (shared with the backfill, which fetches nothing);
`PipelineSettings` adds what to fetch. Blocks are typed fields, so a deployment or the UI passes block
references that Prefect resolves before the run starts; Python callers and the CLI may also name a block
(`"x-lake"` or `"s3-bucket/x-lake"`), loaded here once.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect_aws import S3Bucket
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from blocks import saved_block_slug
from blocks.warehouse import Warehouse
from tasks.lake.curate import ROWS_PER_FILE
from tasks.runs.lease import DEFAULT_WAIT_SECONDS

DEFAULT_QUERIES = ["#DataEng", "prefect polars", "(redshift OR s3) lang:en"]
MAX_LOOKBACK_HOURS = 168  # X recent search's window
SourceName = Literal["sample", "x_api", "replay"]
FIRST_DAY = date(2006, 3, 21)  # X's first day: nothing to fetch before it


class InvalidParameter(ValueError):
    """A parameter the user has to correct; the message names the value and the accepted range."""


def utc_today() -> date:
    return datetime.now(UTC).date()


def check_day(day: date) -> date:
    """A day that has begun, from X's first day on: a mistyped future day must not replace the dashboard."""
    today = utc_today()
    if day > today:
        raise InvalidParameter(f"day {day} is after today ({today} UTC)")
    if day < FIRST_DAY:
        raise InvalidParameter(f"day {day} is before {FIRST_DAY}, X's first day")
    return day


class BlockNotFound(ValueError):
    """A block named by a parameter does not exist on the Prefect server in use."""


def _block_by_name(block_class: type[Block], how_to_create: str) -> BeforeValidator:
    """Accept a saved block's name (`name` or `<type-slug>/name`) where the field takes the block itself."""
    slug = block_class.get_block_type_slug()

    def load(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip().removeprefix(f"{slug}/")
        if not name:
            return None
        try:
            return block_class.load(name, _sync=True)
        except ValueError:
            raise BlockNotFound(f"{slug} block {name!r} was not found: {how_to_create}") from None

    return BeforeValidator(load)


_CREATE = "create it with `python -m blocks.create` (README \"Production\") or name another"
BucketBlock = Annotated[S3Bucket | None, _block_by_name(S3Bucket, _CREATE)]
WarehouseBlock = Annotated[Warehouse | None, _block_by_name(Warehouse, _CREATE)]
TokenBlock = Annotated[Secret | None, _block_by_name(Secret, _CREATE)]


class StorageSettings(BaseModel):
    """Where a run keeps its data: production blocks, or embedded defaults under a local folder."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bucket: BucketBlock = Field(
        default=None, title="Lake bucket (S3Bucket block)",
        description="The data lake: raw pages, curated Parquet and CSV, run records and the dashboard. "
        "Empty: a folder `lake` under the local folder.",
    )
    warehouse: WarehouseBlock = Field(
        default=None, title="Warehouse (X Pipeline Warehouse block)",
        description="Where the tables are loaded: Redshift, PostgreSQL or a DuckDB file. "
        "Empty: the DuckDB file `warehouse.duckdb` under the local folder.",
    )
    local_root: str = Field(
        default="data", title="Local folder",
        description="Folder on the worker for the embedded defaults (bucket, DuckDB warehouse, dashboard copy).",
    )
    rows_per_file: int = Field(
        default=ROWS_PER_FILE, ge=1, title="Rows per curated file",
        description="Largest number of rows in one curated Parquet or CSV part file.",
    )
    lease_wait_seconds: float = Field(
        default=DEFAULT_WAIT_SECONDS, ge=0, title="Wait for a busy day (seconds)",
        description="How long a run waits for another run of the same day to end before it fails "
        "(0: fail at once).",
    )

    @property
    def uses_production_blocks(self) -> bool:
        return self.bucket is not None or (self.warehouse is not None and self.warehouse.kind != "duckdb")


class PipelineSettings(StorageSettings):
    """What a run fetches, and where it keeps it."""

    source: SourceName = Field(
        default="sample", title="Source",
        description="x_api: the X API v2 (production); sample: bundled synthetic posts (trying it out); "
        "replay: re-process the pages already landed in the bucket, without fetching.",
    )
    queries: list[str] = Field(
        default_factory=lambda: list(DEFAULT_QUERIES), min_length=1, title="Search queries",
        description="X recent-search queries, each fetched and stored separately (X search syntax).",
    )
    accounts: list[str] = Field(
        default_factory=list, title="Accounts",
        description="x_api: X usernames (without @) whose timelines are fetched besides the queries.",
    )
    x_token: TokenBlock = Field(
        default=None, title="X bearer token (Secret block)",
        description="x_api: the X API v2 bearer token. Empty: the worker's X_BEARER_TOKEN variable.",
    )
    x_lookback_hours: float = Field(
        default=72, gt=0, lt=MAX_LOOKBACK_HOURS, title="First-run lookback (hours)",
        description="x_api: how far back a query's first run reaches (under 168, recent search's window); "
        "later runs continue from the query's saved cursor.",
    )
    x_api_base_url: str | None = Field(
        default=None, title="X API base URL",
        description="x_api: send requests to this http(s) host instead of https://api.twitter.com (a proxy).",
    )
    sample_tweets: int = Field(
        default=400, ge=1, title="Sample posts per query",
        description="sample: synthetic posts generated per query and day.",
    )
    allow_sample_data: bool = Field(
        default=False, title="Allow sample data in blocks",
        description="sample: also write synthetic posts into the bucket and warehouse blocks "
        "(a staging or test setup). Off, such a run refuses to start.",
    )

    @field_validator("x_api_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://x-proxy.example.com")
        return value

    @field_validator("accounts")
    @classmethod
    def _usernames(cls, value: list[str]) -> list[str]:
        return [name.strip().removeprefix("@") for name in value if name.strip()]

    @model_validator(mode="after")
    def _no_sample_into_production(self) -> PipelineSettings:
        if self.source == "sample" and self.uses_production_blocks and not self.allow_sample_data:
            raise ValueError(
                "source 'sample' would write synthetic posts into the production blocks "
                f"({self.describe_blocks()}): set source to x_api (README \"Production\"), or set "
                "allow_sample_data for a staging setup"
            )
        return self

    def describe_blocks(self) -> str:
        blocks = [("bucket", self.bucket), ("warehouse", self.warehouse)]
        names = [f"{label} {saved_block_slug(block) or f'an unsaved {block.get_block_type_slug()} block'}"
                 for label, block in blocks if block is not None]
        return ", ".join(names) or "embedded defaults"

    @classmethod
    def for_replay(cls, storage: StorageSettings) -> PipelineSettings:
        """Settings of a day re-processed from its landed pages (the backfill)."""
        return cls(source="replay", **{name: getattr(storage, name) for name in StorageSettings.model_fields})

