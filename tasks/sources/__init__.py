"""The sources edge: where a day's pages come from. Each source implements the lake's `PageSource`
(tasks/lake/land.py): `SampleSource` (bundled synthetic posts) and `XApiSource` (X API v2 through
tweepy); flows/edges.py picks one from the run's settings."""

from tasks.sources.sample import SampleSource
from tasks.sources.x_api import XApiSource, bearer_token, timeline_target

__all__ = ["SampleSource", "XApiSource", "bearer_token", "timeline_target"]
