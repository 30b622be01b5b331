"""The run summary: one JSON document in the bucket and a markdown artifact in the Prefect UI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import orjson
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.lake.bucket import Bucket, retry_unless_bucket_error
from tasks.lake.curate import CuratedDay
from tasks.lake.land import LandedQuery
from tasks.warehouse.base import MergeResult


class IncompleteDayError(RuntimeError):
    """The day ran, but without some of its raw data (named in the message): it is not a success."""


@dataclass
class RunSummary:
    day: date
    source: str
    bucket: str
    warehouse: str
    pages: int = 0
    tweets_fetched: int = 0
    api_errors: int = 0
    malformed_pages: int = 0
    unreadable_files: list[str] = field(default_factory=list)  # raw keys left out: the day is incomplete
    skipped: dict[str, int] = field(default_factory=dict)
    cleaned: dict[str, int] = field(default_factory=dict)  # values changed by normalize's string rules
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    files_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    summary_key: str = ""
    # status "ok" with whether the metrics were recomputed or kept, or "failed" with its reason
    analysis: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


def summary_key(day: date) -> str:
    return f"runs/dt={day.isoformat()}/summary.json"


def incomplete_key(day: date) -> str:
    return f"runs/dt={day.isoformat()}/incomplete.json"


@task(
    name="invalidate-summary",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_unless_bucket_error,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def invalidate_summary(bucket: Bucket, day: date) -> None:
    """Remove the day's record of success before anything of the day is rewritten: a run that fails
    half-way then leaves the day not done, and catch-up (tasks/runs/catchup.py) runs it again."""
    bucket.delete([summary_key(day), incomplete_key(day)])  # an absent key is no error


def build_summary(
    day: date,
    source: str,
    bucket: Bucket,
    warehouse: str,
    landed: list[LandedQuery],
    curated: CuratedDay,
    error_keys: list[str],
    loaded: dict[str, MergeResult],
    seconds: dict[str, float],
) -> RunSummary:
    """Counts are of what is in the bucket for the day (the raw pages curated, the `errors/` pages), not of
    what this run's tasks returned: a retried fetch returns only its last attempt's pages, while an earlier
    attempt's stay landed (and are curated); `landed` gives the files this run wrote."""
    s = RunSummary(day=day, source=source, bucket=bucket.describe(), warehouse=warehouse, seconds=seconds)
    s.malformed_pages = len(error_keys)
    s.pages = curated.stats.pages + s.malformed_pages
    s.tweets_fetched = curated.stats.tweets_seen
    s.api_errors = curated.stats.api_errors
    s.skipped = dict(curated.stats.skipped)
    s.cleaned = dict(curated.stats.cleaned)
    for name, files in curated.tables.items():
        r = loaded.get(name)
        s.tables[name] = {
            "rows": files.rows,
            "parts": len(files.parquet),
            "new": r.new if r else 0,
            "updated": r.updated if r else 0,
            "total": r.total if r else 0,
        }
        s.files_written += len(files.parquet) + len(files.csv) + len(files.manifests)
    s.files_written += sum(len(q.keys) + len(q.error_keys) for q in landed)
    s.unreadable_files = list(curated.unreadable_files)
    # An incomplete day's summary is kept apart from the record of success that catch-up reads.
    s.summary_key = incomplete_key(day) if s.unreadable_files else summary_key(day)
    return s


def incomplete_day_error(s: RunSummary) -> IncompleteDayError:
    n = len(s.unreadable_files)
    files, were = ("files", "were") if n > 1 else ("file", "was")
    return IncompleteDayError(
        f"{s.day} is incomplete: {n} raw {files} could not be read (gzip cut short or damaged) and {were} "
        f"left out: {', '.join(s.unreadable_files)}; land the day again from its source or remove the "
        f"{files}, then re-run the day (summary: {s.summary_key})"
    )


def summary_markdown(s: RunSummary) -> str:
    lines = [
        f"# X pipeline run for {s.day}",
        "",
        f"- source: `{s.source}`; bucket: {s.bucket}; warehouse: {s.warehouse}",
        (
            f"- pages: **{s.pages}**, tweets fetched: **{s.tweets_fetched}**, "
            f"partial API errors: {s.api_errors}, malformed pages: {s.malformed_pages}"
        ),
        f"- files written: {s.files_written}; skipped rows: {s.skipped or 'none'}",
        f"- raw files left out, not whole gzip (the day is incomplete): {s.unreadable_files or 'none'}",
        f"- values changed by the string rules (README \"Redshift fidelity\"): {s.cleaned or 'none'}",
        f"- analysis: {s.analysis.get('status', 'not run')}"
        + (f" (metrics {s.analysis['metrics']})" if "metrics" in s.analysis else "")
        + (f" (**{s.analysis['reason']}**; the data is loaded: re-run the day)" if "reason" in s.analysis else ""),
        "",
        "| table | rows today | parts | new | updated | total in warehouse |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {t['rows']} | {t['parts']} | {t['new']} | {t['updated']} | {t['total']} |"
        for name, t in s.tables.items()
    ]
    lines += ["", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {sec:.2f} |" for stage, sec in s.seconds.items()]
    return "\n".join(lines)


@task(name="publish-summary", cache_policy=NO_CACHE, persist_result=False)
def publish_summary(bucket: Bucket, summary: RunSummary) -> str:
    """Write the summary next to the data and show it in the Prefect UI; returns its key."""
    bucket.write(summary.summary_key, summary.to_json())
    create_markdown_artifact(
        key=f"x-pipeline-run-{summary.day.isoformat()}",
        markdown=summary_markdown(summary),
        description=f"X pipeline run summary for {summary.day}",
    )
    return summary.summary_key
