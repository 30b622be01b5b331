"""`python -m flows.daily`: the daily flow from the command line.

The options are the fields of `PipelineSettings` (flows/settings.py), with their descriptions as help:
one definition for the flows, the Prefect UI's Run form and this command line. Options are checked
before anything runs, and every error a user or operator can fix ends in one line
naming the fix (exit status 1), never a traceback; any other error is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import duckdb
import sqlalchemy as sa
from prefect import Flow
from prefect.blocks.core import Block
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from flows.settings import InvalidParameter, PipelineSettings, check_day
from tasks.analytics.analyze import AnalysisError
from tasks.lake.bucket import BucketError, TransientBucketError
from tasks.lake.land import PermanentSourceError
from tasks.runs.lease import LeaseLostError
from tasks.runs.summary import IncompleteDayError, RunSummary
from tasks.sources.x_api import XApiUnavailable
from tasks.warehouse.base import WarehouseError

T = TypeVar("T")
# Repeatable options read better in the singular: `--query a --query b`.
OPTION_NAMES = {"queries": "--query", "accounts": "--account"}


def option_name(name: str, field: FieldInfo) -> str:
    """The option of a settings field: `--kebab-case`, `--<name>-block` for a block (it takes a block name)."""
    if name in OPTION_NAMES:
        return OPTION_NAMES[name]
    return f"--{name.replace('_', '-')}{'-block' if _block_class(field) else ''}"


def _block_class(field: FieldInfo) -> type[Block] | None:
    return next((a for a in get_args(field.annotation) if isinstance(a, type) and issubclass(a, Block)), None)


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


def catchup_days(text: str) -> int:
    days = int(text)
    if days < 1:
        raise InvalidParameter(f"{days} is not at least 1")
    return days


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type whose ValueError message becomes the error line (argparse's own names no reason)."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def build_parser() -> argparse.ArgumentParser:
    """One option per field of `PipelineSettings`, with its description as help (flows/settings.py)."""
    p = argparse.ArgumentParser(
        prog="python -m flows.daily",
        description="Run the daily X pipeline once. With no options: today's UTC day on embedded defaults.",
    )
    p.add_argument("--day", type=_argument(lambda text: check_day(date.fromisoformat(text))), default=None,
                   help="UTC day to process, YYYY-MM-DD (default: catch up to today)")
    p.add_argument("--max-catchup-days", type=_argument(catchup_days), default=None,
                   help="the most days one catch-up run processes (default: 7)")
    for name, field in PipelineSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        options: dict[str, Any] = {"dest": name, "default": None, "help": f"{field.description} (default: {default})"}
        if field.annotation is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is list:
            options["action"] = "append"
            options["metavar"] = option_name(name, field).removeprefix("--").upper()  # one value per option
        elif get_origin(field.annotation) is Literal:
            options["choices"] = get_args(field.annotation)
        elif (block := _block_class(field)) is not None:
            options["metavar"] = "NAME"
            options["help"] = f"{field.description} NAME: a saved {block.get_block_type_slug()} block"
        if name == "local_root":
            options["type"] = _argument(writable_folder)
        p.add_argument(option_name(name, field), **options)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The day, the catch-up bound and the run's `settings`; a bad value exits (status 2) with one line
    naming its option. Blocks are loaded by name here, so a missing one is reported before the run."""
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {name: getattr(args, name) for name in PipelineSettings.model_fields if getattr(args, name) is not None}
    try:
        settings = PipelineSettings(**given)
    except ValidationError as exc:
        send_prefect_queues()  # loading a block queues events: their shutdown messages come before the error line
        option, message = settings_problem(exc)
        if option is None:  # the options together are refused (production blocks with sample data)
            sys.exit(f"error: {message}")
        parser.error(f"argument {option}: {message}")
    return argparse.Namespace(day=args.day, max_catchup_days=args.max_catchup_days, settings=settings)


def settings_problem(exc: ValidationError) -> tuple[str | None, str]:
    """The first problem in one line, and the option it comes from (None: the options taken together)."""
    error = exc.errors()[0]
    message = _one_line(str(error["msg"]).removeprefix("Value error, "))
    if not error["loc"]:
        return None, message
    name = str(error["loc"][0])
    return option_name(name, PipelineSettings.model_fields[name]), message


def send_prefect_queues(timeout_seconds: float = 10) -> None:
    """Send the run's queued logs and events to the Prefect API now rather than at interpreter exit, so
    that Prefect's shutdown messages ("Still processing items ...") come before the CLI's own last lines.
    (Prefect's test harness drains the same two workers.) Their "Still processing items" progress
    warnings are silenced while draining: here the wait is deliberate, and the CLI's last line is its own."""
    workers = (APILogWorker, EventsWorker)
    loggers = [logging.getLogger(worker.__name__) for worker in workers]  # each service logs under its class name
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        for worker in workers:
            worker.drain_all(timeout=timeout_seconds)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


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


def main(daily: Flow[..., RunSummary], argv: Sequence[str] | None = None) -> int:
    """Run `daily` (flows/daily.py passes itself: this module does not import the flow) with the options."""
    args = parse_args(argv)
    try:
        options = {} if args.max_catchup_days is None else {"max_catchup_days": args.max_catchup_days}
        summary = daily(day=args.day, settings=args.settings, **options)
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


