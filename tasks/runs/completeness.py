"""Landing completeness: a day is curated, loaded and recorded as a success only when every query landed
all of its pages for the day.

Each query's landing keeps a record next to its raw pages, `raw/<source>/<slug>/dt=D/_landed.json`
(tasks/lake/land.py), which says `complete: false` and why from the moment a landing starts until it has
finished. Before a day is curated, every query the run landed and every query with raw pages for the day
must have a complete record whose files are all there. Otherwise the day's run summary (the record of
success catch-up reads) is withdrawn, `runs/dt=D/incomplete.json` says which query and why, and the day
fails, so catch-up runs it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import orjson
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.lake.bucket import Bucket
from tasks.lake.land import LANDING_RECORD, raw_prefix, read_landing
from tasks.runs.summary import IncompleteDayError, incomplete_key, summary_key

INCOMPLETE_QUERIES = "incomplete_queries"  # this check's list in the day's incomplete.json


def find_incomplete(
    bucket: Bucket, day: date, source: str | None, queries: Sequence[str]
) -> list[dict[str, Any]]:
    """Each query of `day` (landed by this run from `source`, or with raw pages from it, or from any source
    for a replay) whose landing is not complete, with why; empty when the day is whole."""
    marker = f"/dt={day.isoformat()}/"
    listed = {k for k in bucket.list(f"raw/{source}/" if source else "raw/") if marker in k}
    prefixes = {k.rsplit("/", 1)[0] + "/" for k in listed if k.endswith((".jsonl.gz", LANDING_RECORD))}
    prefixes |= {raw_prefix(source, q, day) for q in queries if source}
    problems = []
    for prefix in sorted(prefixes):
        key = prefix + LANDING_RECORD
        landed = read_landing(bucket, key) if key in listed else None
        problem: dict[str, Any] = {"source": prefix.split("/")[1], "query": None, "landing_record": key,
                                   "complete": False}
        if landed is None:
            problem["reason"] = "no landing record: its landing never finished, or predates landing records"
            problems.append(problem)
            continue
        absent = [k for k in landed.keys if k not in listed]
        if landed.complete and not absent:
            continue
        problem.update(query=landed.query, complete=landed.complete, pages=landed.pages, tweets=landed.tweets,
                       reason=landed.reason if not landed.complete else
                       f"{len(absent)} raw files its landing record names are gone, e.g. {absent[0]}")
        problems.append(problem)
    return problems


@task(name="check-landing", cache_policy=NO_CACHE, persist_result=False)
def require_complete_landing(bucket: Bucket, day: date, source: str | None, queries: Sequence[str]) -> None:
    """Fail the day, saying in the bucket what is missing, unless every query's landing for it is complete."""
    problems = find_incomplete(bucket, day, source, queries)
    key = incomplete_key(day)
    # Other checks keep their own lists in the same file: only this one's is replaced.
    found = bucket.read_tagged(key)
    record = orjson.loads(found[0]) if found else {"day": day.isoformat()}
    if not problems:
        if record.pop(INCOMPLETE_QUERIES, None) is not None:
            if any(isinstance(v, list) and v for v in record.values()):
                bucket.write(key, orjson.dumps(record, option=orjson.OPT_INDENT_2))
            else:
                bucket.delete([key])
        return
    record[INCOMPLETE_QUERIES] = problems
    bucket.write(key, orjson.dumps(record, option=orjson.OPT_INDENT_2))
    bucket.delete([summary_key(day)])  # an earlier run's record of success no longer holds (absent: no error)
    what = "; ".join(f"{p['source']} {p['query'] or p['landing_record']!r}: {p['reason']}" for p in problems)
    raise IncompleteDayError(f"{day} is not complete, so it was neither loaded nor recorded as a success "
                             f"(see {key}): {what}")
