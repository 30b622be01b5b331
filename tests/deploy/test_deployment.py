"""prefect.yaml on a real `prefect server start`: deploy, schedule, and a worker that completes a run.

Everything runs as the README's Deploy section says, with the repository's own executables, from a
copy of the repository (so the test can check that `prefect deploy` leaves prefect.yaml unchanged)
and a worker started in another directory (so the pull step, not the deploying machine's path,
finds the code).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml

from tests.net import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAY = date(2026, 11, 24)
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Processes:
    """Starts commands in their own process groups and stops every group, even when a test fails."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], cwd=cwd, env={**self.env, **(env or {})},
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        log = cwd.parent / f"{args[0]}-{len(self.started)}.log"
        proc = self.start(*args, cwd=cwd, log=log, env=env)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        out = log.read_text(errors="replace")
        assert code == 0, f"{' '.join(args)} exited with {code}:\n{out[-4000:]}"
        return out

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A real Prefect server, the x-pipeline process pool, and `prefect deploy --all` run twice."""
    base = tmp_path_factory.mktemp("deploy")
    repo = base / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".tools", ".prefect", "data", "tests", "__pycache__", ".pytest_cache"))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_CLI_PROMPT": "false",
        # Scheduled runs appear on the scheduler's next loop: look every 2 s instead of every 60 s.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    })
    procs = Processes(env)
    try:
        server = procs.start("prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                             cwd=base, log=base / "server.log")
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (base / "server.log").read_text()[-4000:]
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not become healthy in 90 s"
            time.sleep(0.5)

        procs.run("prefect", "work-pool", "create", "x-pipeline", "--type", "process", cwd=repo)
        yaml_before = (repo / "prefect.yaml").read_bytes()
        client = httpx.Client(base_url=api, timeout=10)
        first = procs.run("prefect", "--no-prompt", "deploy", "--all", cwd=repo)
        before = client.get("/deployments/name/x-daily/daily").json()
        procs.run("prefect", "--no-prompt", "deploy", "--all", cwd=repo)
        yield {"api": api, "client": client, "repo": repo, "base": base, "procs": procs, "first_deploy": first,
               "yaml_before": yaml_before, "daily_before": before}
    finally:
        procs.stop_all()


def test_deploy_leaves_prefect_yaml_unchanged_and_is_idempotent(deployed: dict) -> None:
    client: httpx.Client = deployed["client"]
    assert (deployed["repo"] / "prefect.yaml").read_bytes() == deployed["yaml_before"]
    daily = client.get("/deployments/name/x-daily/daily").json()
    before = deployed["daily_before"]
    assert daily["id"] == before["id"]
    assert [s["id"] for s in daily["schedules"]] == [s["id"] for s in before["schedules"]]
    assert len(daily["schedules"]) == 1
    names = {d["name"] for d in client.post("/deployments/filter", json={}).json()}
    assert names == {"daily", "backfill"}


def test_daily_deployment_has_its_cron_schedule_and_scheduled_runs(deployed: dict) -> None:
    client: httpx.Client = deployed["client"]
    spec = yaml.safe_load(deployed["yaml_before"])["deployments"][0]["schedules"][0]
    daily = client.get("/deployments/name/x-daily/daily").json()
    (schedule,) = daily["schedules"]
    assert schedule["schedule"]["cron"] == spec["cron"] == "45 23 * * *"
    assert schedule["schedule"]["timezone"] == "UTC" and schedule["active"] and schedule["slug"] == spec["slug"]
    assert set(daily["tags"]) == {"x-pipeline", "daily"} and daily["work_pool_name"] == "x-pipeline"
    assert daily["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $X_PIPELINE_DIR }}"}}
    ]
    assert str(deployed["repo"]) not in str(daily)  # nothing of the deploying machine's paths
    # Unset Prefect variables: the block parameters are empty, i.e. the embedded defaults.
    assert daily["parameters"]["bucket_block"] == "" and daily["parameters"]["source"] == "sample"

    deadline = time.monotonic() + 30
    while True:
        runs = client.post("/flow_runs/filter", json={
            "deployments": {"id": {"any_": [daily["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
        }).json()
        if runs or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert runs, "the scheduler created no scheduled run in 30 s"
    starts = sorted(r["next_scheduled_start_time"] for r in runs)
    assert all(s.endswith("23:45:00Z") for s in starts), starts
    assert len(set(starts)) == len(starts), "the re-deploy added a second schedule's runs"

    backfill = client.get("/deployments/name/x-backfill/backfill").json()
    assert backfill["schedules"] == [] and set(backfill["tags"]) == {"x-pipeline", "backfill"}


def _settled_flow_run(client: httpx.Client, run_id: str) -> dict:
    """The flow run once the server holds a final state for it (read at once, it may not yet: see
    tests/prefect_api.py); the last answer after 120 s, for the test's assertion to report."""
    deadline = time.monotonic() + 120
    while True:
        response = client.get(f"/flow_runs/{run_id}")
        run = response.json() if response.status_code == 200 else None
        if (run and run["state"]["type"] in FINAL_STATES) or time.monotonic() > deadline:
            return run or response.raise_for_status().json()
        time.sleep(0.5)


def test_a_worker_in_another_directory_completes_a_triggered_run(deployed: dict) -> None:
    client: httpx.Client = deployed["client"]
    procs: Processes = deployed["procs"]
    local_root = deployed["base"] / "data"
    elsewhere = deployed["base"] / "worker-cwd"
    elsewhere.mkdir()
    out = procs.run("prefect", "deployment", "run", "x-daily/daily", "--param", f"day={DAY}",
                    "--param", f"local_root={local_root}", "--param", "sample_tweets=100", cwd=elsewhere)
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)[1]

    procs.run("prefect", "worker", "start", "--pool", "x-pipeline", "--run-once", cwd=elsewhere,
              env={"X_PIPELINE_DIR": str(deployed["repo"])}, timeout=150)

    run = _settled_flow_run(client, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == f"daily-{DAY}"
    children = client.post("/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}).json()
    assert [c["name"] for c in children] == [f"day-{DAY}"]
    con = duckdb.connect(str(local_root / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT COUNT(*) FROM tweets").fetchone()[0] == 300  # 3 default queries x 100
    finally:
        con.close()
    artifacts = client.post("/artifacts/filter", json={"artifacts": {"key": {"any_": [f"x-pipeline-run-{DAY}"]}}})
    assert artifacts.json(), "the run summary artifact is missing"
