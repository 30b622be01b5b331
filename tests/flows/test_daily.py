import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest
import sqlalchemy as sa
from prefect.filesystems import LocalFileSystem
from prefect_aws import AwsCredentials, S3Bucket
from prefect_aws.client_parameters import AwsClientParameters
from pydantic import SecretStr

from flows.cli import error_line, main, option_name, parse_args
from flows.daily import daily
from flows.settings import PipelineSettings, utc_today
from tasks.analytics.analyze import AnalysisError
from tasks.lake import open_bucket
from tasks.lake.bucket import LocalBucket, TransientBucketError
from tasks.lake.land import FetchedPage, fetch_and_land, landed_raw_keys
from tasks.lake.s3 import S3Lake
from tasks.runs.catchup import successful_days
from tasks.runs.summary import IncompleteDayError, incomplete_key
from tasks.schema import METRICS_DAILY, TABLES
from tasks.sources.sample import SampleSource
from tasks.sources.x_api import BearerToken, XApiSource, XApiUnavailable
from tasks.warehouse.postgres import PostgresWarehouse, engine_url
from tests.net import free_port

QUERIES = ["#DataEng", "prefect polars"]


def _snapshot(root: Path) -> tuple[dict[str, int], dict[str, int]]:
    lake = root / "lake"
    keys = {p.relative_to(lake).as_posix(): p.stat().st_size for p in lake.rglob("*") if p.is_file()}
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        counts = {name: con.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in TABLES}
    finally:
        con.close()
    return keys, counts


def test_daily_twice_on_the_same_day_changes_nothing(prefect_server, tmp_path: Path, day: date) -> None:
    first = daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=300, local_root=str(tmp_path)))
    keys_1, counts_1 = _snapshot(tmp_path)
    pages = [tmp_path / "lake" / "dashboard" / f"dt={day}.html", tmp_path / "dashboard" / f"dt={day}.html"]
    written_1 = [p.stat().st_mtime_ns for p in pages]
    second = daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=300, local_root=str(tmp_path)))
    keys_2, counts_2 = _snapshot(tmp_path)

    assert all(counts_1[name] > 0 for name in TABLES), counts_1
    assert counts_1["tweets"] == 600  # 2 queries x 300, the duplicate on two pages counted once
    assert counts_2 == counts_1
    assert set(keys_2) == set(keys_1)
    data = {k: v for k, v in keys_1.items() if not k.startswith("runs/")}
    assert {k: keys_2[k] for k in data} == data  # raw, curated and manifests: the same bytes
    for kind in ("raw/sample/", "curated/tweets/", "manifests/tweets/", "runs/"):
        assert any(k.startswith(kind) for k in keys_1), kind
    assert second.tables["tweets"]["new"] == 0 and second.tables["tweets"]["updated"] == 600
    assert first.tables["tweets"]["new"] == 600
    # The second run loaded the same rows: the day's metrics were kept, not computed again.
    assert first.analysis["metrics"] == "recomputed" and second.analysis["metrics"].startswith("kept: no load changed")
    assert [p.stat().st_mtime_ns for p in pages] == written_1  # and its pages were not written again
    summary = orjson.loads((tmp_path / "lake" / first.summary_key).read_bytes())
    assert summary["api_errors"] == 2 and summary["tweets_fetched"] == 602


def test_replay_gives_the_same_rows(prefect_server, tmp_path: Path, day: date) -> None:
    daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=150, local_root=str(tmp_path)))
    _, counts = _snapshot(tmp_path)
    (tmp_path / "warehouse.duckdb").unlink()
    daily(day=day, settings=PipelineSettings(source="replay", local_root=str(tmp_path)))
    _, replayed = _snapshot(tmp_path)
    assert replayed == counts


class FetchLostMidDay(SampleSource):
    """Test double: the sample source, whose connection drops after `pages_before_failure` pages."""

    def __init__(self, pages_before_failure: int) -> None:
        super().__init__(tweets_per_query=600)
        self.pages_before_failure = pages_before_failure

    def pages(self, query: str, day: date) -> Iterator[FetchedPage]:
        for n, page in enumerate(super().pages(query, day)):
            if n == self.pages_before_failure:
                raise ConnectionError("connection reset by peer")
            yield page


def test_replay_of_a_day_whose_landing_was_interrupted_fails_naming_the_query(
    prefect_server, tmp_path: Path, day: date
) -> None:
    bucket = open_bucket(None, tmp_path)
    daily(day=day, settings=PipelineSettings(queries=QUERIES[1:], sample_tweets=150, local_root=str(tmp_path)))
    land_once = fetch_and_land.with_options(retries=0)
    with pytest.raises(ConnectionError):
        land_once(FetchLostMidDay(pages_before_failure=4), bucket, QUERIES[0], day, pages_per_file=2)
    assert len(landed_raw_keys(bucket, day, "sample")) == 2 + 1  # two files of the cut query, one complete

    with pytest.raises(RuntimeError, match=f"{day} is not complete.*{QUERIES[0]}.*ConnectionError"):
        daily(day=day, settings=PipelineSettings(source="replay", local_root=str(tmp_path)))

    runs = tmp_path / "lake" / "runs" / f"dt={day}"
    assert not (runs / "summary.json").exists()  # the earlier run's record of success is withdrawn too
    [missing] = orjson.loads((runs / "incomplete.json").read_bytes())["incomplete_queries"]
    assert missing["query"] == QUERIES[0] and missing["complete"] is False


def test_replay_of_a_day_with_no_raw_pages_fails_clearly(prefect_server, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to replay"):
        daily(day=date(2020, 1, 1), settings=PipelineSettings(source="replay", local_root=str(tmp_path)))


def test_cli_defaults_to_today_on_embedded_defaults() -> None:
    args = parse_args([])
    assert args.day is None and args.settings == PipelineSettings()
    assert parse_args(["--day", "2026-11-01", "--query", "a", "--query", "b"]).settings.queries == ["a", "b"]


def test_cli_has_an_option_with_help_for_every_setting(capsys: pytest.CaptureFixture) -> None:
    """The command line is built from the settings model: a new setting is an option with its description."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name, field in PipelineSettings.model_fields.items():
        assert option_name(name, field) in help_text and " ".join(field.description.split()) in help_text, name
    assert "--bucket-block NAME" in help_text and "--x-token-block NAME" in help_text
    settings = parse_args(["--source", "x_api", "--account", "@prefect", "--x-lookback-hours", "12",
                           "--no-allow-sample-data"]).settings
    assert (settings.source, settings.accounts, settings.x_lookback_hours) == ("x_api", ["prefect"], 12)


def test_a_run_without_a_day_catches_up_from_the_last_successful_day(prefect_server, tmp_path: Path) -> None:
    today = utc_today()
    daily(day=today - timedelta(days=2), settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))
    last = daily(max_catchup_days=7, settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))
    assert last.day == today
    done = sorted(p.parent.name for p in (tmp_path / "lake" / "runs").glob("dt=*/summary.json"))
    assert done == [f"dt={today - timedelta(days=n)}" for n in (2, 1, 0)]


def test_analysis_failure_keeps_the_load_and_does_not_block_catch_up(prefect_server, tmp_path: Path) -> None:
    """The day's analysis fails after its load committed: the day is recorded as loaded with the analysis
    failure and its reason, the run ends failed, and the next catch-up run does not process that day again."""
    today = utc_today()
    failing = today - timedelta(days=1)
    # A metrics table that refuses every row the analysis inserts.
    ddl = METRICS_DAILY.create_sql("duckdb").replace("\n)", ',\n    CHECK ("tweets" < 0)\n)')
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(ddl)
    con.close()
    with pytest.raises(AnalysisError, match=f"analysis failed for {failing}"):
        daily(day=failing, settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))
    summary = orjson.loads((tmp_path / "lake" / f"runs/dt={failing}/summary.json").read_bytes())
    assert summary["analysis"]["status"] == "failed" and "CHECK" in summary["analysis"]["reason"]
    assert summary["tables"]["tweets"]["total"] == 100
    assert _snapshot(tmp_path)[1]["tweets"] == 100  # the load stays

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute('DROP TABLE "metrics_daily"')
    con.close()
    last = daily(max_catchup_days=7, settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))
    assert last.day == today and last.analysis == {"status": "ok", "metrics": "recomputed"}
    done = sorted(p.parent.name for p in (tmp_path / "lake" / "runs").glob("dt=*/summary.json"))
    assert done == [f"dt={failing}", f"dt={today}"]


def _lake(root: Path) -> LocalBucket:
    return LocalBucket(LocalFileSystem(basepath=str(root / "lake")))


def test_failed_rerun_of_a_successful_day_is_not_left_marked_done(
    prefect_server, tmp_path: Path, day: date
) -> None:
    daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))
    assert day in successful_days(_lake(tmp_path))
    # The re-run rewrites the day's raw and curated files, then fails at the load.
    (tmp_path / "warehouse.duckdb").write_bytes(b"not a DuckDB file")

    with pytest.raises(duckdb.Error):
        daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=50, local_root=str(tmp_path)))

    assert day not in successful_days(_lake(tmp_path))  # so catch-up runs the day again


def test_a_day_with_a_truncated_raw_file_fails_naming_it_and_is_not_marked_done(
    prefect_server, tmp_path: Path, day: date
) -> None:
    daily(day=day, settings=PipelineSettings(queries=QUERIES, sample_tweets=150, local_root=str(tmp_path)))
    lake = _lake(tmp_path)
    cut = landed_raw_keys(lake, day)[0]
    whole = lake.read(cut)
    lake.write(cut, whole[: len(whole) // 2])

    with pytest.raises(IncompleteDayError, match=f"1 raw file could not be read.*{cut}"):
        daily(day=day, settings=PipelineSettings(source="replay", local_root=str(tmp_path)))

    assert day not in successful_days(lake)
    summary = orjson.loads(lake.read(incomplete_key(day)))
    assert summary["unreadable_files"] == [cut]
    assert summary["tweets_fetched"] == 151  # the other query's file (one tweet is on two of its pages)


TOMORROW = utc_today() + timedelta(days=1)
ONE_ATTEMPT = {"retries": {"max_attempts": 1}}  # boto3: fail at once, the test needs no client retries


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--day", str(TOMORROW)], f"argument --day: day {TOMORROW} is after today"),
        (["--day", "2006-03-20"], "argument --day: day 2006-03-20 is before 2006-03-21"),
        (["--day", "2026-02-30"], "argument --day:"),
        (["--rows-per-file", "0"], "argument --rows-per-file: Input should be greater than or equal to 1"),
        (["--sample-tweets", "-5"], "argument --sample-tweets: Input should be greater than or equal to 1"),
        (["--sample-tweets", "many"], "argument --sample-tweets: Input should be a valid integer"),
        (["--x-lookback-hours", "0"], "argument --x-lookback-hours: Input should be greater than 0"),
        (["--x-lookback-hours", "168"], "argument --x-lookback-hours: Input should be less than 168"),
        (["--lease-wait-seconds", "-1"], "argument --lease-wait-seconds: Input should be greater than or equal to 0"),
        (["--source", "csv"], "argument --source: invalid choice: 'csv'"),
        (["--max-catchup-days", "0"], "argument --max-catchup-days: 0 is not at least 1"),
        (["--x-api-base-url", "x.example.com"], "--x-api-base-url: 'x.example.com' is not an http(s) URL"),
        (["--x-api-base-url", "ftp://x.example"], "--x-api-base-url: 'ftp://x.example' is not an http(s)"),
    ],
)
def test_cli_refuses_a_bad_value_in_one_line_naming_the_option(
    argv: list[str], named: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit:
        parse_args(argv)
    assert exit.value.code == 2
    assert named in capsys.readouterr().err.strip().splitlines()[-1]


def test_cli_refuses_a_local_root_that_is_not_a_writable_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    not_writable = Path("/proc/x-pipeline-data")  # /proc takes no new files, even from root
    for root, problem in [(a_file, "is not a directory"), (a_file / "sub", "is not a directory"),
                          (not_writable, "is not writable")]:
        with pytest.raises(SystemExit) as exit:
            parse_args(["--local-root", str(root)])
        assert exit.value.code == 2
        last_line = capsys.readouterr().err.strip().splitlines()[-1]
        assert "argument --local-root:" in last_line and problem in last_line, last_line
    new_folder = str(tmp_path / "new" / "folder")
    assert parse_args(["--local-root", new_folder]).settings.local_root == new_folder  # made by the run


def test_a_future_day_is_refused_by_the_flow_and_leaves_the_dashboard_alone(
    prefect_server, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=f"day {TOMORROW} is after today"):
        daily(day=TOMORROW, settings=PipelineSettings(queries=QUERIES, sample_tweets=20, local_root=str(tmp_path)))
    assert not (tmp_path / "dashboard").exists() and not (tmp_path / "lake").exists()


def test_cli_with_the_duckdb_file_locked_by_another_process_ends_in_one_line(
    prefect_server, tmp_path: Path, day: date
) -> None:
    path = tmp_path / "warehouse.duckdb"
    code = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit) as exit:
            main(daily, ["--day", str(day), "--query", "#DataEng", "--sample-tweets", "20",
                  "--local-root", str(tmp_path)])
    finally:
        holder.kill()
        holder.wait()
    line = exit.value.code
    assert isinstance(line, str) and "\n" not in line, line
    assert line.startswith("error: the DuckDB file is locked by another process") and str(path) in line


def _one_line_naming(line: str | None, *words: str) -> None:
    assert line is not None and line.startswith("error: ") and "\n" not in line, line
    assert all(w in line for w in words), line


def test_an_unreachable_s3_endpoint_ends_in_one_line_naming_the_fix(aws_env: None) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    credentials = AwsCredentials(
        aws_access_key_id="testing-key-id",
        aws_secret_access_key="testing-secret-value",
        region_name="us-east-1",
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint, config=ONE_ATTEMPT),
    )
    with pytest.raises(TransientBucketError) as caught:
        S3Lake(S3Bucket(bucket_name="lake", credentials=credentials)).list("runs/")
    _one_line_naming(error_line(caught.value), "s3://lake", "unreachable", "endpoint")


def test_an_unreachable_postgresql_ends_in_one_line_naming_the_fix_without_the_password() -> None:
    secret = "pg-password-never-shown"
    url = engine_url(f"postgresql://pipeline@127.0.0.1:{free_port()}/x", secret, "postgresql+psycopg2")
    warehouse = PostgresWarehouse(url, "x")
    with pytest.raises(sa.exc.OperationalError) as caught:
        warehouse.ensure_tables()
    warehouse.close()
    line = error_line(caught.value)
    _one_line_naming(line, "warehouse", "127.0.0.1", "Connection refused", "warehouse block")
    assert secret not in line


def test_an_x_api_still_failing_after_retries_ends_in_one_line_naming_the_fix(x_api_server) -> None:
    x_api_server.fail(503, on_request=1)
    x_api_server.fail(503, on_request=2)
    source = XApiSource(BearerToken(SecretStr(x_api_server.token), "set X_BEARER_TOKEN"),
                        api_base_url=x_api_server.url, max_attempts=2, backoff_seconds=0)
    with pytest.raises(XApiUnavailable) as caught:
        list(source.pages("#DataEng", utc_today() - timedelta(days=1)))
    _one_line_naming(error_line(caught.value), "503", "still failing after retries", "re-run")
