"""Smoke test of the benchmark in quick mode: it runs end to end and reports every case.

Figures are printed, never asserted (a timed test would fail on a busy machine, not on a slow pipeline).
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_reports_every_case(tmp_path: Path) -> None:
    workdir = tmp_path / "not-yet-created"  # --workdir is created when missing
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--tweets", "20000", "--repeat", "2",
         "--results", str(tmp_path), "--workdir", str(workdir)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    [result_file] = tmp_path.glob("bench-20000-*.json")
    report = json.loads(result_file.read_text())
    rows = {r["case"]: r for r in report["rows"]}
    assert set(rows) == {"pipeline_small", "pipeline", "baseline", "floor", "analysis"}
    for case in ("pipeline", "baseline", "floor"):
        assert rows[case]["tweets"] >= 20000 and rows[case]["seconds"] > 0 and rows[case]["peak_rss_mib"] > 0
    # The pipeline and the baseline read the same pages and keep one row per tweet id.
    assert rows["pipeline"]["detail"]["rows"]["tweets"] == rows["baseline"]["detail"]["rows"]["tweets"] == 20000
    assert rows["pipeline_small"]["tweets"] < rows["pipeline"]["tweets"]
    # each case ran twice and the row is the faster run (the lower middle of two)
    for case, runs in report["all_runs"].items():
        assert len(runs) == 2 and rows[case]["seconds"] == min(r["seconds"] for r in runs), case
    assert set(report["ratios"]) == {"speedup_vs_baseline", "slowdown_vs_floor", "peak_rss_gib", "rss_growth",
                                     "analysis_vs_pipeline", "analysis_rerun_vs_pipeline"}
    # The analysis scores every English tweet of the day once: its re-run scores none and changes no metric.
    analysis = rows["analysis"]
    assert analysis["tweets"] == 20000 and analysis["detail"]["scored_new"] > 5000
    assert analysis["detail"]["rerun_scored_new"] == 0 and analysis["detail"]["metrics_identical"] is True
    # The re-run's loads changed nothing: metrics kept, no page written (the new day wrote its page and the index).
    assert analysis["detail"]["rerun_metrics"].startswith("kept") and analysis["detail"]["rerun_pages_written"] == 0
    assert analysis["detail"]["pages_written"] == 2
    assert "new day:" in run.stdout and "re-run:" in run.stdout and "target < 10%" in run.stdout
    assert [set(r) for r in report["analysis_by_round"]] == [{"analysis_vs_pipeline", "analysis_rerun_vs_pipeline"}] * 2
    assert "pipeline vs baseline" in run.stdout and "pipeline vs floor" in run.stdout
    # the speed-up within each round: that round's baseline time over its pipeline time
    all_runs = report["all_runs"]
    assert report["speedup_vs_baseline_by_round"] == [
        b["seconds"] / p["seconds"] for p, b in zip(all_runs["pipeline"], all_runs["baseline"], strict=True)
    ]
    assert "round by round" in run.stdout
    # the generated lake is removed unless --keep
    assert workdir.is_dir() and not any(p.name.startswith("x-pipeline-bench-") for p in workdir.iterdir())
