"""The Makefile's entry points, read with `make -n` (print the commands, run nothing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(*target: str) -> str:
    # -B: every prerequisite counts as out of date, so its commands are printed too.
    return subprocess.run(["make", "-n", "-B", "-C", str(ROOT), *target], check=True, capture_output=True,
                          text=True).stdout


def test_make_run_installs_only_the_runtime_dependencies() -> None:
    commands = _dry_run("run")
    [sync] = [line for line in commands.splitlines() if " sync " in line]
    assert "--no-dev" in sync and "--frozen" in sync
    assert "-m flows.daily" in commands


def test_make_test_installs_the_dev_dependencies_and_runs_pytest() -> None:
    commands = _dry_run("test")
    assert any(" sync --frozen --python" in line and "--no-dev" not in line for line in commands.splitlines())
    assert "-m pytest" in commands


def test_make_server_on_another_port_points_the_ui_at_that_port() -> None:
    commands = _dry_run("server", "PREFECT_SERVER_PORT=4321")
    assert "PREFECT_UI_API_URL=http://127.0.0.1:4321/api" in commands and "--port 4321" in commands


def test_make_deploy_production_checks_the_blocks_before_deploying() -> None:
    commands = _dry_run("deploy-production").splitlines()
    check = next(i for i, line in enumerate(commands) if "blocks.create --check" in line)
    deploy = next(i for i, line in enumerate(commands) if "deploy --name production --name backfill-production" in line)
    assert check < deploy
