"""`python -m flows.daily`: the daily flow from the command line.

Options are checked before anything runs, and every error a user or operator can fix ends in one line
naming the fix (exit status 1), never a traceback; any other error is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import duckdb
import sqlalchemy as sa
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker

from flows.daily import DEFAULT_QUERIES, MAX_LOOKBACK_HOURS, InvalidParameter, check_day, daily
from tasks.analyze import AnalysisError
from tasks.bucket import BucketError, TransientBucketError
from tasks.curate import ROWS_PER_FILE
from tasks.lease import DEFAULT_WAIT_SECONDS, LeaseLostError
from tasks.source import PermanentSourceError
from tasks.summary import IncompleteDayError
from tasks.warehouse import WarehouseError
from tasks.x_api import XApiUnavailable

T = TypeVar("T")


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise InvalidParameter(f"{n} is not a positive whole number")
    return n


def lookback_hours(text: str) -> float:
    hours = float(text)
    if not 0 < hours < MAX_LOOKBACK_HOURS:
        raise InvalidParameter(f"{hours:g} is not between 0 and {MAX_LOOKBACK_HOURS} hours "
                               "(recent search's window)")
    return hours


def seconds_to_wait(text: str) -> float:
    seconds = float(text)
    if not seconds >= 0:
        raise InvalidParameter(f"{seconds:g} is not a number of seconds >= 0")
    return seconds


def http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidParameter(f"{text!r} is not an http(s) URL such as https://x-proxy.example.com")
    return text


def writable_folder(text: str) -> str:
    """A folder that is, or can be made, writable: checked before a run rather than found half-way."""
    root = Path(text).absolute()
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise InvalidParameter(f"{existing} is not a directory")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise InvalidParameter(f"{existing} is not writable ({exc.strerror})") from None
    return text


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose ValueError message becomes the error line (argparse's own names no reason)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m flows.daily",
        description="Run the daily X pipeline once. With no options: today's UTC day on embedded defaults.",
    )
    p.add_argument("--day", type=_argument(lambda text: check_day(date.fromisoformat(text))), default=None,
                   help="UTC day to process, YYYY-MM-DD (default: catch up to today)")
    p.add_argument("--query", dest="queries", action="append", default=None,
                   help=f"search query; repeat for several (default: {DEFAULT_QUERIES})")
    p.add_argument("--account", dest="accounts", action="append", default=[],
                   help="X username whose timeline to fetch (x_api); repeat for several")
    p.add_argument("--source", choices=["sample", "x_api", "replay"], default="sample",
                   help="sample: bundled pages; x_api: X API v2; replay: re-run from landed raw pages")
    p.add_argument("--bucket-block", default=None, help="bucket block, e.g. s3-bucket/x-lake (default: local folder)")
    p.add_argument("--warehouse-block", default=None, help="x-pipeline-warehouse block name (default: DuckDB file)")
    p.add_argument("--x-token-block", default=None, help="Secret block with the X bearer token (or X_BEARER_TOKEN)")
    p.add_argument("--x-lookback-hours", type=_argument(lookback_hours), default=72,
                   help="x_api: how far back a query's first run reaches (under 168, recent search's window)")
    p.add_argument("--x-api-base-url", type=_argument(http_url), default=None,
                   help="x_api: send requests to this host instead of https://api.twitter.com (a proxy)")
    p.add_argument("--sample-tweets", type=_argument(positive_int), default=400,
                   help="tweets per query from the sample source")
    p.add_argument("--rows-per-file", type=_argument(positive_int), default=ROWS_PER_FILE,
                   help="rows per curated part file")
    p.add_argument("--local-root", type=_argument(writable_folder), default="data",
                   help="folder for the embedded bucket and warehouse")
    p.add_argument("--lease-wait-seconds", type=_argument(seconds_to_wait), default=DEFAULT_WAIT_SECONDS,
                   help="how long to wait for another run of the same day to end before failing (0: fail at once)")
    return p.parse_args(argv)


def send_prefect_queues(timeout_seconds: float = 10) -> None:
    """Send the run's queued logs and events to the Prefect API now rather than at interpreter exit, so
    that Prefect's shutdown messages ("Still processing items ...") come before the CLI's own last lines.
    (Prefect's test harness drains the same two workers.)"""
    APILogWorker.drain_all(timeout=timeout_seconds)
    EventsWorker.drain_all(timeout=timeout_seconds)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# Errors whose message already names what to fix.
USER_ERRORS = (BucketError, PermanentSourceError, WarehouseError, FileNotFoundError, IncompleteDayError, AnalysisError,
               InvalidParameter, LeaseLostError)


def error_line(exc: BaseException) -> str | None:
    """The CLI's last line for an error a user or operator can fix, naming what to fix; None for any other
    (a bug, whose traceback is wanted). Retried failures get here only once the retries are spent."""
    if isinstance(exc, USER_ERRORS):
        return f"error: {_one_line(exc)}"
    if isinstance(exc, TransientBucketError):
        return (f"error: {_one_line(exc)}; the bucket is unreachable: check its endpoint, the network and the "
                "bucket block, then re-run")
    if isinstance(exc, XApiUnavailable):
        return (f"error: {_one_line(exc)}; the X API is still failing after retries: re-run later (catch-up "
                "fills the day in) or check --x-api-base-url")
    if isinstance(exc, duckdb.IOException) and "Could not set lock" in str(exc):
        return (f"error: the DuckDB file is locked by another process ({_one_line(exc)}): close that process "
                "or wait for it, then re-run")
    if isinstance(exc, sa.exc.OperationalError):  # the driver's words name the host, never the password
        return (f"error: the warehouse refused or did not answer the connection ({_one_line(exc.orig)}): "
                "check the warehouse block's URL and password, and that the server is up and reachable")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = daily(
            day=args.day,
            queries=args.queries or DEFAULT_QUERIES,
            accounts=args.accounts,
            source=args.source,
            bucket_block=args.bucket_block,
            warehouse_block=args.warehouse_block,
            x_token_block=args.x_token_block,
            x_lookback_hours=args.x_lookback_hours,
            x_api_base_url=args.x_api_base_url,
            sample_tweets=args.sample_tweets,
            rows_per_file=args.rows_per_file,
            local_root=args.local_root,
            lease_wait_seconds=args.lease_wait_seconds,
        )
    except Exception as exc:
        if (line := error_line(exc)) is None:
            raise
        sys.exit(line)  # one line naming what to fix, no traceback (exit status 1)
    finally:
        send_prefect_queues()
    print(f"\nDay {summary.day}: {summary.tweets_fetched} tweets in {summary.pages} pages")
    print(f"  data (bucket):  {summary.bucket}")
    print(f"  warehouse:      {summary.warehouse}")
    print(f"  dashboard:      {summary.extra['dashboard']}")
    print(f"  run summary:    {summary.summary_key} in the bucket, and the Prefect artifact "
          f"x-pipeline-run-{summary.day}")
    for name, t in summary.tables.items():
        print(f"  {name:<20} {t['rows']:>8} rows today  {t['new']:>7} new  {t['updated']:>7} updated  {t['total']:>8} total")
    return 0


