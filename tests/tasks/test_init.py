import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOW_CONF = "import tasks.lake.curate, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _allocator_conf(env: dict[str, str]) -> str:
    """The allocator configuration polars was given in a fresh interpreter that imports the stages."""
    result = subprocess.run(
        [sys.executable, "-c", SHOW_CONF], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}


def test_polars_keeps_freed_memory_for_ten_seconds(clean_env: dict[str, str]) -> None:
    # Polars appends what it was given after its own defaults, so the last setting of a key wins.
    assert _allocator_conf(clean_env).endswith("dirty_decay_ms:10000,muzzy_decay_ms:10000")


def test_allocator_setting_from_the_environment_wins(clean_env: dict[str, str]) -> None:
    conf = _allocator_conf({**clean_env, "_RJEM_MALLOC_CONF": "dirty_decay_ms:0"})
    assert conf.endswith(",dirty_decay_ms:0")
    assert "10000" not in conf
