"""The pipeline's stages, one module each."""

import logging
import os

# Polars' allocator (jemalloc) hands memory freed for 0.5 s back to the kernel (polars sets
# `dirty_decay_ms:500` when imported); curate frees and reallocates batch-sized buffers every few hundred
# ms, so each batch faulted its pages in afresh. Kept for 10 s instead: at 1,000,000 tweets 0.3-0.5 s less
# system CPU and about 0.3 s less wall time, for about 50 MiB more peak RSS (four interleaved sets of
# runs). Polars reads `_RJEM_MALLOC_CONF` once, when first imported, so this is set before any stage
# imports it; a value already in the environment wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:10000,muzzy_decay_ms:10000")


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run's logger inside a flow or task (its lines reach the UI), else the module logger `name`
    (a library user, a unit test). Prefect is imported here, not at the top: this module sets the variable
    above before anything imports polars."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
