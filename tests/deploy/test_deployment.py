"""prefect.yaml on a real Prefect server (`make server`): deploy, schedule, the Run form's parameter
schema, and workers that complete a run of the trial deployment and of the production one.

Everything runs as the README's Deploy and Production sections say, with the repository's own
executables, from a copy of the repository (so the test can check that `prefect deploy` leaves
prefect.yaml unchanged) and a worker started in another directory (so the pull step, not the deploying
machine's path, finds the code). The production run reaches moto's S3, a PostgreSQL server and the
local X API server, all on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
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
PRODUCTION_QUERIES = ["#DataEng", "prefect polars"]


class Processes:
    """Starts commands in their own process groups and stops every group, even when a test fails."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, cwd: Path, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        command = [args[0] if args[0] == "make" else str(BIN / args[0]), *args[1:]]
        proc = subprocess.Popen(command, cwd=cwd, env={**self.env, **(env or {})},
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
        # As the README starts it: `make server` on a port of its own (the repository's venv is already synced).
        server = procs.start("make", "-s", "-C", str(REPO), "server", f"PREFECT_SERVER_PORT={port}",
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
    assert names == {"daily", "backfill", "production", "backfill-production"}


def test_make_server_on_another_port_serves_a_ui_that_talks_to_that_port(deployed: dict) -> None:
    settings = httpx.get(deployed["api"].removesuffix("/api") + "/ui-settings", timeout=10).json()
    assert settings["api_url"] == deployed["api"]


def _described(schema: dict) -> list[str]:
    """Every parameter of the Run form, nested settings included, as `path: description`."""
    definitions = schema.get("definitions", {})
    found = []

    def visit(properties: dict, path: str) -> None:
        for name, prop in properties.items():
            found.append(f"{path}{name}: {prop.get('description') or ''}")
            ref = prop.get("$ref", "").removeprefix("#/definitions/")
            if ref in definitions and "block_type_slug" not in definitions[ref]:
                visit(definitions[ref]["properties"], f"{path}{name}.")

    visit(schema["properties"], "")
    return found


def _block_types(schema: dict, model: str) -> dict[str, str]:
    """The block type of each block-typed field of a settings model in the schema."""
    definitions = schema["definitions"]
    types = {}
    for name, prop in definitions[model]["properties"].items():
        for option in prop.get("anyOf", [prop]):
            target = definitions.get(option.get("$ref", "").removeprefix("#/definitions/"), {})
            if "block_type_slug" in target:
                types[name] = target["block_type_slug"]
    return types


def test_the_run_form_describes_every_parameter_and_offers_block_pickers(deployed: dict) -> None:
    client: httpx.Client = deployed["client"]
    for name, model, blocks in [
        ("x-daily/production", "PipelineSettings",
         {"bucket": "s3-bucket", "warehouse": "x-pipeline-warehouse", "x_token": "secret"}),
        ("x-backfill/backfill-production", "StorageSettings", {"bucket": "s3-bucket", "warehouse": "x-pipeline-warehouse"}),
    ]:
        schema = client.get(f"/deployments/name/{name}").json()["parameter_openapi_schema"]
        described = _described(schema)
        assert len(described) > len(schema["properties"]), described  # the settings' fields are in the form
        assert [d for d in described if d.endswith(": ")] == [], f"{name}: parameters without a description"
        assert _block_types(schema, model) == blocks
        fields = schema["definitions"][model]["properties"]
        assert [f["title"] for f in fields.values() if "_" in f["title"]] == []  # words, not snake_case


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
    # The trial deployment runs on the embedded defaults; the production one names its source and blocks.
    assert daily["parameters"] == {"max_catchup_days": 7}
    production = client.get("/deployments/name/x-daily/production").json()
    settings = production["parameters"]["settings"]
    assert settings["source"] == "x_api" and settings["bucket"] == {"$ref": {"block_document_slug": "s3-bucket/x-lake"}}
    assert production["schedules"][0]["schedule"]["cron"] == "45 23 * * *" and "production" in production["tags"]

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
    settings = json.dumps({"local_root": str(local_root), "sample_tweets": 100})
    out = procs.run("prefect", "deployment", "run", "x-daily/daily", "--param", f"day={DAY}",
                    "--param", f"settings={settings}", "--flow-run-name", f"daily-{DAY}", cwd=elsewhere)
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)[1]
    assert client.get(f"/flow_runs/{run_id}").json()["name"] == f"daily-{DAY}"  # named at creation (README)

    procs.run("prefect", "worker", "start", "--pool", "x-pipeline", "--run-once", cwd=elsewhere,
              env={"X_PIPELINE_DIR": str(deployed["repo"])}, timeout=150)

    run = _settled_flow_run(client, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == f"daily-{DAY}"
    children = client.post("/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}).json()
    assert [c["name"] for c in children] == [f"day-{DAY}"]
    assert {"x-pipeline", "daily"} <= set(children[0]["tags"])  # filtering by the deployment's tags shows the day
    con = duckdb.connect(str(local_root / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT COUNT(*) FROM tweets").fetchone()[0] == 300  # 3 default queries x 100
    finally:
        con.close()
    artifacts = client.post("/artifacts/filter", json={"artifacts": {"key": {"any_": [f"x-pipeline-run-{DAY}"]}}})
    assert artifacts.json(), "the run summary artifact is missing"


def test_the_production_deployment_runs_on_s3_postgresql_and_the_x_api(
    deployed: dict, moto_server: str, aws_env: None, pg_server: str, x_api_server, request: pytest.FixtureRequest
) -> None:
    """README "Production", step by step: blocks from the environment, the check, a run of `production`."""
    import boto3
    import psycopg2

    client: httpx.Client = deployed["client"]
    procs: Processes = deployed["procs"]
    day = date.today() - timedelta(days=1)  # within recent search's 7 days
    published = set().union(*(x_api_server.publish(q, day, 60) for q in PRODUCTION_QUERIES))
    bucket, schema = "production-lake", f"production_{abs(hash(request.node.nodeid)) % 10**6}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    environment = {"AWS_ACCESS_KEY_ID": "production-key-id", "AWS_SECRET_ACCESS_KEY": "production-secret",
                   "AWS_REGION": "us-east-1", "S3_ENDPOINT_URL": moto_server, "X_LAKE_BUCKET": bucket,
                   "X_BEARER_TOKEN": x_api_server.token, "WAREHOUSE_KIND": "postgresql", "WAREHOUSE_URL": pg_server,
                   "WAREHOUSE_SCHEMA": schema}
    check = procs.start("python", "-m", "blocks.create", "--check", cwd=deployed["repo"], log=deployed["base"] / "c.log")
    assert check.wait(timeout=120) == 1 and "python -m blocks.create" in (deployed["base"] / "c.log").read_text()
    procs.run("python", "-m", "blocks.create", cwd=deployed["repo"], env=environment)
    procs.run("python", "-m", "blocks.create", "--check", cwd=deployed["repo"])

    # The deployment's own settings; only the X API's host is this machine's server instead of api.twitter.com.
    settings = client.get("/deployments/name/x-daily/production").json()["parameters"]["settings"]
    settings |= {"queries": PRODUCTION_QUERIES, "x_api_base_url": x_api_server.url,
                 "local_root": str(deployed["base"] / "production-worker")}
    out = procs.run("prefect", "deployment", "run", "x-daily/production", "--param", f"day={day}",
                    "--param", f"settings={json.dumps(settings)}", cwd=deployed["base"])
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out)[1]
    procs.run("prefect", "worker", "start", "--pool", "x-pipeline", "--run-once", cwd=deployed["base"],
              env={"X_PIPELINE_DIR": str(deployed["repo"])}, timeout=180)

    run = _settled_flow_run(client, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["parameters"]["settings"]["bucket"] == {"$ref": {"block_document_slug": "s3-bucket/x-lake"}}
    [child] = client.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [run_id]}}}).json()
    assert child["parameters"]["settings"]["source"] == "x_api" and "production" in child["tags"]
    assert environment["AWS_SECRET_ACCESS_KEY"] not in json.dumps(child["parameters"])
    assert x_api_server.log and all(r.authorized for r in x_api_server.log)  # the run called the X API
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
            .list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("raw/x_api/") for k in keys) and f"runs/dt={day}/summary.json" in keys
    with psycopg2.connect(pg_server) as con, con.cursor() as cur:
        cur.execute(f'SELECT "tweet_id" FROM "{schema}"."tweets"')
        assert {str(r[0]) for r in cur.fetchall()} == published
    assert not (deployed["base"] / "production-worker").exists()  # nothing on the embedded defaults


def test_a_production_run_of_the_trial_deployment_is_refused_in_one_line(deployed: dict) -> None:
    """The trial deployment's sample source with the production bucket: the run fails before it starts."""
    client: httpx.Client = deployed["client"]
    settings = {"bucket": {"$ref": {"block_document_slug": "s3-bucket/x-lake"}}}
    response = client.post(f"/deployments/{client.get('/deployments/name/x-daily/daily').json()['id']}/create_flow_run",
                           json={"parameters": {"day": str(DAY), "settings": settings}})
    assert response.status_code == 201, response.text
    run_id = response.json()["id"]
    deployed["procs"].run("prefect", "worker", "start", "--pool", "x-pipeline", "--run-once", cwd=deployed["base"],
                          env={"X_PIPELINE_DIR": str(deployed["repo"])}, timeout=150)
    run = _settled_flow_run(client, run_id)
    assert run["state"]["type"] == "FAILED", run["state"]
    assert "source 'sample' would write synthetic posts into the production blocks" in run["state"]["message"]
