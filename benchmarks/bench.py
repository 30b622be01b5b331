"""Benchmark: normalize + write of N generated tweets vs a tutorial baseline and a floor, and their analysis.

One run lands N sample tweets as the raw gzip JSON-lines files the pipeline lands (timed on its own),
then runs each case on that same input in its own process, so peak RSS is the case's alone
(`os.wait4` returns the child's rusage):

- `pipeline`: `tasks.lake.curate.curate_raw_files`, the body of the flow's `curate_day` task: normalize
  every raw file, spool, dedupe, and write Parquet + gzip CSV for every table plus manifests. It runs
  at N tweets and at a tenth of N (the first raw files) to show that peak memory stays bounded.
- `baseline`: the classic tutorial pipeline: `json.loads` per page, a Python dict per tweet, a list of
  them, `pandas.DataFrame(list)`, `to_csv` (the tweets table only, which flatters it).
- `floor`: the same raw pages read by Arrow's JSON reader and written straight to Parquet, no
  transformation: about the least any pipeline can do with these bytes.
- `analysis`: the flow's `analyze-and-publish` (less its Prefect artifact) on the same day, loaded once
  (untimed) into an embedded DuckDB warehouse: `analyze_day` on a fresh copy of it (every English tweet new
  to sentiment scoring) and `publish_pages` (dashboard views read, HTML rendered and written), then both
  again (a re-run of an analyzed day whose loads changed nothing: metrics and pages are kept). Targets:
  analyze + publish of the new day in at most the pipeline's time for the same day, a re-run in under a
  tenth of it.

Usage: `python benchmarks/bench.py [--tweets 1000000] [--repeat 3]` (or `make bench`); `--tweets 20000` is
a quick run. Each case runs `--repeat` times, in rounds of every case in turn, and its median run is
reported: on a shared machine one run of a case can be 20% off the next. Prints a table and the ratios
and writes them as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = date(2026, 11, 24)
QUERY = "#DataEng benchmark"
CASES = ("generate", "pipeline", "baseline", "floor", "prepare-analysis", "analysis")
TARGETS = {"speedup_vs_baseline_min": 4.0, "slowdown_vs_floor_max": 2.0, "peak_rss_gib_max": 1.5,
           "rss_growth_max": 2.0, "analysis_vs_pipeline_max": 1.0, "analysis_rerun_vs_pipeline_max": 0.1}
# Each sample text plus one of these: texts that meet VADER's lexicon and rules (the sample's own words are
# outside its lexicon), to show what scoring costs on real English text.
SENTIMENT_TEXTS = (
    "I love this release, it is really great!", "This outage is terrible and the support was not helpful.",
    "Not bad at all, but the docs could be better.", "kind of disappointed :( never so slow before",
    "Absolutely AMAZING work, thanks team!!!", "Is it broken again?? What a mess.",
)


@dataclass
class CaseResult:
    case: str
    tweets: int
    raw_files: int
    seconds: float  # the work itself, timed inside the child (imports and start-up excluded)
    process_seconds: float  # the whole child process, start-up included
    cpu_seconds: float  # user + system CPU of the whole child process, every thread
    peak_rss_mib: float
    detail: dict[str, Any]

    @property
    def tweets_per_second(self) -> float:
        return self.tweets / self.seconds if self.seconds else 0.0


# --- the cases, each run in a child process -------------------------------------------------------


def run_pipeline(root: Path, keys: list[str], expected_tweets: int, rows_per_file: int | None) -> dict[str, Any]:
    from prefect.filesystems import LocalFileSystem

    from tasks.lake.bucket import LocalBucket
    from tasks.lake.curate import ROWS_PER_FILE, curate_raw_files, part_count

    bucket = LocalBucket(LocalFileSystem(basepath=str(root)))
    parts = part_count(expected_tweets, rows_per_file or ROWS_PER_FILE)
    started = time.perf_counter()
    curated = curate_raw_files(bucket, DAY, keys, parts)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "tweets": curated.stats.tweets_seen,
        "parts": parts,
        "rows": {name: files.rows for name, files in curated.tables.items()},
        "bytes_written": sum(o.size for f in curated.tables.values() for o in f.parquet + f.csv),
    }


def run_baseline(root: Path, keys: list[str], out: Path) -> dict[str, Any]:
    """The tutorial way, written as tutorials write it (on purpose: this is what is being beaten)."""
    import gzip

    import pandas as pd

    started = time.perf_counter()
    rows = []
    tweets_seen = 0
    for key in keys:
        for line in gzip.decompress((root / key).read_bytes()).splitlines():
            page = json.loads(line)
            for tweet in page["body"].get("data", []):
                tweets_seen += 1
                metrics = tweet.get("public_metrics", {})
                entities = tweet.get("entities", {})
                rows.append({
                    "tweet_id": tweet["id"],
                    "author_id": tweet.get("author_id"),
                    "conversation_id": tweet.get("conversation_id"),
                    "created_at": tweet.get("created_at"),
                    "lang": tweet.get("lang"),
                    "text": tweet.get("text"),
                    "in_reply_to_user_id": tweet.get("in_reply_to_user_id"),
                    "possibly_sensitive": tweet.get("possibly_sensitive"),
                    "retweet_count": metrics.get("retweet_count"),
                    "reply_count": metrics.get("reply_count"),
                    "like_count": metrics.get("like_count"),
                    "quote_count": metrics.get("quote_count"),
                    "bookmark_count": metrics.get("bookmark_count"),
                    "impression_count": metrics.get("impression_count"),
                    "hashtags": ",".join(h["tag"] for h in entities.get("hashtags", [])),
                    "fetched_at": page["request"]["fetched_at"],
                })
    df = pd.DataFrame(rows)
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True)
    df = df.drop_duplicates("tweet_id", keep="last")
    df.to_csv(out, index=False)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tweets": tweets_seen, "rows": {"tweets": len(df)},
            "bytes_written": out.stat().st_size}


def run_floor(root: Path, keys: list[str], out: Path) -> dict[str, Any]:
    import gzip
    import io

    import pyarrow.compute as pc
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    from tasks.lake.normalize import RAW_LINE_SCHEMA
    from tasks.schema import PARQUET_COMPRESSION

    parse = pajson.ParseOptions(explicit_schema=RAW_LINE_SCHEMA, unexpected_field_behavior="ignore")
    read = pajson.ReadOptions(block_size=16 << 20)
    started = time.perf_counter()
    pages = 0
    tweets = 0
    with pq.ParquetWriter(out, RAW_LINE_SCHEMA, compression=PARQUET_COMPRESSION) as writer:
        for key in keys:
            table = pajson.read_json(io.BytesIO(gzip.decompress((root / key).read_bytes())),
                                     read_options=read, parse_options=parse)
            writer.write_table(table)
            pages += table.num_rows
            tweets += pc.sum(pc.list_value_length(pc.struct_field(table["body"], "data"))).as_py() or 0
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "tweets": tweets, "rows": {"pages": pages}, "bytes_written": out.stat().st_size}


def prepare_analysis(root: Path, keys: list[str], expected_tweets: int, rows_per_file: int | None,
                     warehouse_path: Path) -> dict[str, Any]:
    """The day curated as the flow curates it and loaded into a new DuckDB warehouse (the analysis' input)."""
    from prefect.filesystems import LocalFileSystem

    from tasks.lake.bucket import LocalBucket
    from tasks.lake.curate import ROWS_PER_FILE, curate_raw_files, part_count
    from tasks.schema import TABLES
    from tasks.warehouse.base import DuckDBWarehouse

    bucket = LocalBucket(LocalFileSystem(basepath=str(root)))
    started = time.perf_counter()
    curated = curate_raw_files(bucket, DAY, keys, part_count(expected_tweets, rows_per_file or ROWS_PER_FILE))
    warehouse = DuckDBWarehouse(warehouse_path)
    try:
        warehouse.ensure_tables()
        for name in (n for n in TABLES if n in curated.tables):
            warehouse.load_day(bucket, curated.tables[name])
    finally:
        warehouse.close()
    return {"seconds": time.perf_counter() - started, "tweets": curated.stats.tweets_seen}


def run_analysis(root: Path, base: Path, out: Path, workers: int | None) -> dict[str, Any]:
    """`analyze_day` on a new copy of the loaded day, publish, then `analyze_day` again (the re-run)."""
    from prefect.filesystems import LocalFileSystem

    from tasks.analytics.analyze import analyze_day
    from tasks.analytics.dashboard import publish_pages
    from tasks.analytics.sentiment import PARALLEL_AT, available_cores, score_texts
    from tasks.lake.bucket import LocalBucket
    from tasks.schema import METRIC_TABLES
    from tasks.warehouse.base import DuckDBWarehouse

    Path(f"{out}.wal").unlink(missing_ok=True)  # a copy of the loaded day, nothing of an earlier round's
    shutil.copyfile(base, out)
    bucket = LocalBucket(LocalFileSystem(basepath=str(root)))
    bucket.delete([k for k in bucket.list("dashboard/") if not k.startswith("dashboard/assets/")])  # an earlier round's
    warehouse = DuckDBWarehouse(out)

    def metrics() -> dict[str, list[tuple]]:
        return {name: sorted(warehouse.query(f"SELECT * FROM \"{name}\" WHERE \"dt\" = DATE '{DAY}'"), key=repr)
                for name in METRIC_TABLES}

    try:
        started = time.perf_counter()
        new = analyze_day(warehouse, DAY, workers=workers)
        analyzed = time.perf_counter()
        published = publish_pages(warehouse, bucket, DAY, None)
        done = time.perf_counter()
        first = metrics()
        rerun_started = time.perf_counter()
        rerun = analyze_day(warehouse, DAY, workers=workers)
        rerun_analyzed = time.perf_counter()
        republished = publish_pages(warehouse, bucket, DAY, None)
        rerun_done = time.perf_counter()
        identical = metrics() == first
        english = [row[0] for row in warehouse.query(
            f"SELECT COALESCE(\"note_text\", \"text\") FROM \"tweets\" WHERE \"dt\" = DATE '{DAY}' "
            "AND \"lang\" = 'en' AND COALESCE(\"note_text\", \"text\") IS NOT NULL ORDER BY \"tweet_id\"")]
    finally:
        warehouse.close()
    # Scoring alone on the same number of texts that meet VADER's lexicon (not a target: information).
    rich = [f"{text} {SENTIMENT_TEXTS[i % len(SENTIMENT_TEXTS)]}" for i, text in enumerate(english)]
    scoring = time.perf_counter()
    score_texts(rich, workers)
    rich_seconds = time.perf_counter() - scoring
    return {
        "seconds": done - started,
        "analyze_seconds": analyzed - started,
        "publish_seconds": done - analyzed,
        "tweets": new.tweets,
        "scored_new": new.scored_new,
        "pages_written": len(published.written),
        "rerun_seconds": rerun_done - rerun_started,
        "rerun_analyze_seconds": rerun_analyzed - rerun_started,
        "rerun_publish_seconds": rerun_done - rerun_analyzed,
        "rerun_scored_new": rerun.scored_new,
        "rerun_metrics": rerun.describe(),
        "rerun_pages_written": len(republished.written),
        "metrics_identical": identical,
        "workers": (workers or available_cores()) if new.scored_new >= PARALLEL_AT else 1,
        "sentiment_texts_seconds": rich_seconds,
        "page_bytes": len(bucket.read(f"dashboard/dt={DAY}.html")),
    }


def child_main(args: argparse.Namespace) -> None:
    root = Path(args.root)
    keys = json.loads(Path(args.keys_file).read_text()) if args.keys_file else []
    out = Path(args.out) if args.out else None
    if args.case == "generate":
        result = generate(root, args.expected_tweets, args.seed)
    elif args.case == "pipeline":
        result = run_pipeline(root, keys, args.expected_tweets, args.rows_per_file)
    elif args.case == "baseline":
        result = run_baseline(root, keys, out)
    elif args.case == "prepare-analysis":
        result = prepare_analysis(root, keys, args.expected_tweets, args.rows_per_file, out)
    elif args.case == "analysis":
        result = run_analysis(root, Path(args.base_warehouse), out, args.workers)
    else:
        result = run_floor(root, keys, out)
    print(json.dumps(result))


# --- the driver -----------------------------------------------------------------------------------


def generate(root: Path, n_tweets: int, seed: int) -> dict[str, Any]:
    """Land `n_tweets` sample tweets as raw files, exactly as the flow's fetch-and-land does."""
    from prefect.filesystems import LocalFileSystem

    from tasks.lake.bucket import LocalBucket
    from tasks.lake.land import land_pages
    from tasks.sources.sample import SampleSource

    bucket = LocalBucket(LocalFileSystem(basepath=str(root)))
    started = time.perf_counter()
    landed = land_pages(bucket, "sample", QUERY, DAY, SampleSource(n_tweets, seed).pages(QUERY, DAY))
    return {"seconds": time.perf_counter() - started, "keys": landed.keys, "bytes": landed.bytes}


def run_child(*case_args: str) -> tuple[dict[str, Any], float, resource.struct_rusage]:
    """Run `bench.py --case ...` in a new process: its JSON result, wall seconds and resource usage.

    The driver imports only the standard library: a child's peak RSS starts from its parent's at
    exec, so a heavy driver would be counted in every case.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), *case_args]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    stdout = proc.stdout.read() if proc.stdout else b""
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would be the max over every child so far.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark case {case_args[1]} failed with exit code {proc.returncode}")
    return json.loads(stdout.decode().strip().splitlines()[-1]), seconds, usage


def run_case(case: str, name: str, root: Path, keys: list[str], workdir: Path, expected_tweets: int,
             rows_per_file: int | None, extra: tuple[str, ...] = ()) -> CaseResult:
    keys_file = workdir / f"{name}.keys.json"
    keys_file.write_text(json.dumps(keys))
    # Write back what earlier cases wrote (hundreds of MiB each) before this one starts, so that no case
    # shares the cores with the kernel flushing another case's output.
    os.sync()
    result, process_seconds, usage = run_child(
        "--case", case, "--root", str(root), "--keys-file", str(keys_file), "--out", str(workdir / f"{name}.out"),
        "--expected-tweets", str(expected_tweets),
        *(["--rows-per-file", str(rows_per_file)] if rows_per_file else []), *extra,
    )
    return CaseResult(
        case=name,
        tweets=result.pop("tweets"),
        raw_files=len(keys),
        seconds=result.pop("seconds"),
        process_seconds=process_seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
        detail=result,
    )


def median_of(values: Iterable[float]) -> float:
    """The median (the lower middle one of an even count), as `median_run` picks runs."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def median_run(results: list[CaseResult]) -> CaseResult:
    """The run with the median time (the lower middle one of an even count); its own RSS and CPU go with it."""
    return sorted(results, key=lambda r: r.seconds)[(len(results) - 1) // 2]


def machine() -> dict[str, Any]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("polars", "pyarrow", "pandas")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tweets", type=int, default=1_000_000, help="tweets to generate (default 1,000,000)")
    p.add_argument("--small-tweets", type=int, help="tweets of the memory-growth run (default: a tenth)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rows-per-file", type=int, help="as the flow's --rows-per-file (default: the flow's default)")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--workdir", type=Path, help="where the generated lake goes (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the generated lake in --workdir and reuse it next time")
    p.add_argument("--repeat", type=int, default=3, help="runs of each case; the median run is reported (default 3)")
    p.add_argument("--workers", type=int, help="processes that score sentiment in the analysis (default: the cores)")
    # internal: run one case in this (child) process
    p.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--keys-file", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--expected-tweets", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--base-warehouse", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        child_main(args)
        return {}

    small = args.small_tweets or max(1, args.tweets // 10)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    # With --keep the lake stays in --workdir, named by size and seed, and a later run reuses it.
    workdir = Path(tempfile.mkdtemp(prefix="x-pipeline-bench-", dir=args.workdir))
    lake = (args.workdir / f"lake-{args.tweets}-seed{args.seed}") if args.keep and args.workdir else workdir / "lake"
    landed_file = lake / "landed.json"
    started_at = datetime.now(UTC)
    info = {"machine": machine(), "versions": versions()}
    try:
        if landed_file.exists():
            landed = json.loads(landed_file.read_text())
            print(f"reusing {args.tweets:,} generated tweets in {lake}", flush=True)
        else:
            print(f"generating {args.tweets:,} tweets (seed {args.seed}) into {lake} ...", flush=True)
            landed, _, _ = run_child("--case", "generate", "--root", str(lake), "--expected-tweets",
                                     str(args.tweets), "--seed", str(args.seed))
            landed_file.write_text(json.dumps(landed))
        keys, raw_bytes, gen_seconds = landed["keys"], landed["bytes"], landed["seconds"]
        print(f"  {len(keys)} raw files, {raw_bytes / 2**20:.0f} MiB gzip, generated in {gen_seconds:.1f} s",
              flush=True)
        # Raw files hold 50 pages of 100 tweets: the first files make the smaller day.
        small_keys = keys[: max(1, -(-small // 5000))]
        print("loading the day into a DuckDB warehouse for the analysis case ...", flush=True)
        prepared = run_case("prepare-analysis", "analysis-base", lake, keys, workdir, args.tweets, args.rows_per_file)
        print(f"  {prepared.seconds:.1f} s (curate + load, not timed as a case)", flush=True)
        base_warehouse = workdir / "analysis-base.out"
        analysis_args = ("--base-warehouse", str(base_warehouse),
                         *(["--workers", str(args.workers)] if args.workers else []))
        every: dict[str, list[CaseResult]] = {}
        # Rounds of every case in turn, so a machine that slows down for a while slows every case alike.
        for round_number in range(1, args.repeat + 1):
            for case, name, case_keys, expected in (
                ("pipeline", "pipeline_small", small_keys, small),
                ("pipeline", "pipeline", keys, args.tweets),
                ("baseline", "baseline", keys, args.tweets),
                ("floor", "floor", keys, args.tweets),
                ("analysis", "analysis", keys, args.tweets),
            ):
                print(f"round {round_number}/{args.repeat}: {name} on {len(case_keys)} raw files ...", flush=True)
                r = run_case(case, name, lake, case_keys, workdir, expected, args.rows_per_file,
                             analysis_args if case == "analysis" else ())
                every.setdefault(name, []).append(r)
                print(f"  {r.seconds:.1f} s, {r.tweets_per_second:,.0f} tweets/s, peak RSS {r.peak_rss_mib:,.0f} MiB, "
                      f"{r.cpu_seconds:.1f} CPU s", flush=True)
        runs = [median_run(results) for results in every.values()]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(lake, ignore_errors=True)

    by = {r.case: r for r in runs}
    pipeline, baseline, floor, pipeline_small = by["pipeline"], by["baseline"], by["floor"], by["pipeline_small"]
    analysis = by["analysis"]
    ratios = {
        "speedup_vs_baseline": baseline.seconds / pipeline.seconds,
        "slowdown_vs_floor": pipeline.seconds / floor.seconds,
        "peak_rss_gib": pipeline.peak_rss_mib / 1024,
        "rss_growth": pipeline.peak_rss_mib / pipeline_small.peak_rss_mib,
        "analysis_vs_pipeline": analysis.seconds / pipeline.seconds,
        # the median re-run (each round's analysis re-runs once), against the pipeline's median
        "analysis_rerun_vs_pipeline": median_of(r.detail["rerun_seconds"] for r in every["analysis"]) / pipeline.seconds,
    }
    # Each round ran the baseline right after the pipeline: its ratio shows how far the machine moved.
    speedup_by_round = [b.seconds / p.seconds for p, b in zip(every["pipeline"], every["baseline"], strict=True)]
    # The analysis runs in the same round as the pipeline, a few seconds later: the same machine, as near as it gets.
    analysis_by_round = [{"analysis_vs_pipeline": a.seconds / p.seconds,
                          "analysis_rerun_vs_pipeline": a.detail["rerun_seconds"] / p.seconds}
                         for p, a in zip(every["pipeline"], every["analysis"], strict=True)]
    met = {
        "speedup_vs_baseline": ratios["speedup_vs_baseline"] >= TARGETS["speedup_vs_baseline_min"],
        "slowdown_vs_floor": ratios["slowdown_vs_floor"] <= TARGETS["slowdown_vs_floor_max"],
        "peak_rss_gib": ratios["peak_rss_gib"] < TARGETS["peak_rss_gib_max"],
        "rss_growth": ratios["rss_growth"] <= TARGETS["rss_growth_max"],
        "analysis_vs_pipeline": ratios["analysis_vs_pipeline"] <= TARGETS["analysis_vs_pipeline_max"],
        "analysis_rerun_vs_pipeline": ratios["analysis_rerun_vs_pipeline"] < TARGETS["analysis_rerun_vs_pipeline_max"],
    }
    info["machine"]["load_average_after"] = os.getloadavg()
    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "tweets": args.tweets,
        "small_tweets": pipeline_small.tweets,
        "seed": args.seed,
        **info,
        "generation": {"seconds": gen_seconds, "raw_files": len(keys), "raw_gzip_bytes": raw_bytes},
        "analysis_preparation_seconds": prepared.seconds,
        "repeat": args.repeat,
        "rows": [{**asdict(r), "tweets_per_second": r.tweets_per_second} for r in runs],
        "all_runs": {name: [asdict(r) for r in results] for name, results in every.items()},
        "ratios": ratios,
        "speedup_vs_baseline_by_round": speedup_by_round,
        "analysis_by_round": analysis_by_round,
        "targets": TARGETS,
        "targets_met": met,
    }
    print_report(report, runs)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"bench-{args.tweets}-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")
    return report


def print_report(report: dict[str, Any], runs: list[CaseResult]) -> None:
    m = report["machine"]
    print(f"\n{report['tweets']:,} tweets, {m['cpus']} CPUs, {m['memory_gib']} GiB, load "
          f"{m['load_average_before'][0]:.1f} -> {m['load_average_after'][0]:.1f}, {report['started_at']}")
    print(f"median of {report['repeat']} run(s) per case; every run's seconds in brackets")
    print(f"{'case':<16}{'tweets':>11}{'seconds':>10}{'tweets/s':>12}{'peak RSS MiB':>14}{'CPU s':>8}  runs")
    for r in runs:
        seconds = ", ".join(f"{x['seconds']:.1f}" for x in report["all_runs"][r.case])
        print(f"{r.case:<16}{r.tweets:>11,}{r.seconds:>10.1f}{r.tweets_per_second:>12,.0f}{r.peak_rss_mib:>14,.0f}"
              f"{r.cpu_seconds:>8.1f}  ({seconds})")
    ratios, met = report["ratios"], report["targets_met"]

    def flag(key: str) -> str:
        return "ok" if met[key] else "MISSED"

    by_round = ", ".join(f"{r:.2f}x" for r in report["speedup_vs_baseline_by_round"])
    print(f"\npipeline vs baseline: {ratios['speedup_vs_baseline']:.2f}x faster (target >= 4x) "
          f"{flag('speedup_vs_baseline')}; round by round {by_round}")
    print(f"pipeline vs floor:    {ratios['slowdown_vs_floor']:.2f}x the floor's time (target <= 2x) "
          f"{flag('slowdown_vs_floor')}")
    print(f"pipeline peak RSS:    {ratios['peak_rss_gib']:.2f} GiB (target < 1.5 GiB) {flag('peak_rss_gib')}")
    print(f"RSS growth:           {ratios['rss_growth']:.2f}x from {report['small_tweets']:,} to "
          f"{report['tweets']:,} tweets (target <= 2x) {flag('rss_growth')}")

    by = {r.case: r for r in runs}
    pipeline, analysis = by["pipeline"], by["analysis"]
    a = analysis.detail
    every = report["all_runs"]["analysis"]
    reruns = [r["detail"]["rerun_seconds"] for r in every]
    rerun = median_of(reruns)
    rounds = report["analysis_by_round"]

    def parts(prefix: str) -> str:
        return ", ".join(f"{what} {median_of(r['detail'][f'{prefix}{what}_seconds'] for r in every):.2f} s"
                         for what in ("analyze", "publish"))

    print(f"\nanalysis (analyze-and-publish) of the same day, {a['scored_new']:,} English tweets new to sentiment "
          f"scoring, {a['workers']} scoring process(es), embedded DuckDB; medians, runs in brackets:")
    print(f"  new day: {analysis.seconds:.2f} s ({parts('')}; {a['pages_written']} pages, "
          f"{a['page_bytes'] / 2**10:.0f} KiB day page) = {ratios['analysis_vs_pipeline']:.2f}x the pipeline's "
          f"{pipeline.seconds:.2f} s (normalize + curate; target <= 1x) {flag('analysis_vs_pipeline')}; round by round "
          + ", ".join(f"{r['analysis_vs_pipeline']:.2f}x" for r in rounds))
    print(f"  re-run:  {rerun:.2f} s ({', '.join(f'{x:.2f}' for x in reruns)}; {parts('rerun_')}), "
          f"{max(r['detail']['rerun_scored_new'] for r in every)} tweets scored, metrics "
          f"{a['rerun_metrics'].split(':')[0]} and identical: {all(r['detail']['metrics_identical'] for r in every)}, "
          f"{max(r['detail']['rerun_pages_written'] for r in every)} pages written = "
          f"{ratios['analysis_rerun_vs_pipeline']:.1%} of the pipeline's time (target < 10%) "
          f"{flag('analysis_rerun_vs_pipeline')}; round by round "
          + ", ".join(f"{r['analysis_rerun_vs_pipeline']:.1%}" for r in rounds))
    print(f"  scoring alone, the same {a['scored_new']:,} texts each with a sentence VADER's lexicon knows: "
          f"{a['sentiment_texts_seconds']:.2f} s (the sample's own words are outside the lexicon)")


if __name__ == "__main__":
    main()
