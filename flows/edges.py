"""The run's edges, resolved once from its settings: the page source, the bucket and the warehouse
that every stage of a day receives (blocks are loaded by Prefect or `flows.settings`, never by a stage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flows.settings import PipelineSettings, StorageSettings
from tasks.lake import Bucket, open_bucket
from tasks.lake.land import PageSource
from tasks.sources import SampleSource, XApiSource, bearer_token
from tasks.warehouse import WarehouseTarget


@dataclass(frozen=True)
class Edges:
    source: PageSource | None  # None: replay the pages already landed
    bucket: Bucket
    warehouse: WarehouseTarget
    dashboard_dir: Path | None  # a local copy of the dashboard, on embedded defaults only


def open_storage(settings: StorageSettings) -> tuple[Bucket, WarehouseTarget]:
    root = Path(settings.local_root)
    return open_bucket(settings.bucket, root), WarehouseTarget(settings.warehouse, root)


def open_source(settings: PipelineSettings) -> PageSource | None:
    if settings.source == "sample":
        return SampleSource(tweets_per_query=settings.sample_tweets)
    if settings.source == "x_api":
        return XApiSource(bearer_token(settings.x_token), lookback=timedelta(hours=settings.x_lookback_hours),
                          api_base_url=settings.x_api_base_url)
    return None


def open_edges(settings: PipelineSettings) -> Edges:
    bucket, warehouse = open_storage(settings)
    dashboard_dir = Path(settings.local_root) / "dashboard" if settings.bucket is None else None
    return Edges(open_source(settings), bucket, warehouse, dashboard_dir)
