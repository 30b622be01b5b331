"""The landing-completeness check on a local-folder bucket, with pages from the sample source."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from tasks.lake.bucket import LocalBucket
from tasks.lake.land import land_pages, landing_key, write_landing
from tasks.runs.completeness import (
    IncompleteDayError,
    find_incomplete,
    incomplete_key,
    require_complete_landing,
)
from tasks.runs.summary import summary_key
from tasks.sources.sample import SampleSource


def land_complete(bucket: LocalBucket, query: str, day: date) -> list[str]:
    landed = land_pages(bucket, "sample", query, day, SampleSource(150).pages(query, day), pages_per_file=1)
    landed.complete = True
    write_landing(bucket, day, landed)
    return landed.keys


def test_a_whole_day_passes_and_a_lost_raw_file_or_a_missing_record_does_not(local_bucket, day) -> None:
    keys = land_complete(local_bucket, "#DataEng", day)
    assert find_incomplete(local_bucket, day, "sample", ["#DataEng"]) == []
    assert find_incomplete(local_bucket, day, None, []) == []

    local_bucket.delete([keys[1]])
    [gone] = find_incomplete(local_bucket, day, None, [])
    assert gone["query"] == "#DataEng" and keys[1] in gone["reason"]

    local_bucket.delete([landing_key("sample", "#DataEng", day)])
    [unrecorded] = find_incomplete(local_bucket, day, None, [])
    assert unrecorded["landing_record"] == landing_key("sample", "#DataEng", day)
    assert unrecorded["reason"].startswith("no landing record")
    # A query this run was to land, with nothing in the bucket at all, is missing too.
    assert [p["landing_record"] for p in find_incomplete(local_bucket, day, "sample", ["other"])] == [
        landing_key("sample", "#DataEng", day), landing_key("sample", "other", day)]


def test_the_check_withdraws_the_summary_and_shares_incomplete_json_with_other_checks(
    local_bucket, day
) -> None:
    land_complete(local_bucket, "#DataEng", day)
    local_bucket.write(summary_key(day), b"{}")
    others = {"day": str(day), "unreadable_raw_files": ["raw/x"]}  # another check's list
    local_bucket.write(incomplete_key(day), orjson.dumps(others))
    local_bucket.delete([landing_key("sample", "#DataEng", day)])

    with pytest.raises(IncompleteDayError, match=f"{day} is not complete.*no landing record"):
        require_complete_landing.fn(local_bucket, day, None, [])

    assert not local_bucket.list(summary_key(day))
    record = orjson.loads(local_bucket.read(incomplete_key(day)))
    assert record["unreadable_raw_files"] == ["raw/x"] and len(record["incomplete_queries"]) == 1

    land_complete(local_bucket, "#DataEng", day)
    require_complete_landing.fn(local_bucket, day, None, [])
    assert orjson.loads(local_bucket.read(incomplete_key(day))) == others

    local_bucket.write(incomplete_key(day), orjson.dumps({"day": str(day), "incomplete_queries": [{}]}))
    require_complete_landing.fn(local_bucket, day, None, [])
    assert not local_bucket.list(incomplete_key(day))
