"""The local-folder bucket: writes that concurrent runs cannot break."""

from __future__ import annotations

import threading
from pathlib import Path

from tasks.lake.bucket import LocalBucket


def test_concurrent_writes_of_one_key_share_no_temporary_file(local_bucket: LocalBucket) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(n: int) -> None:
        start.wait()
        try:
            for _ in range(50):
                local_bucket.write("curated/t/part-00000.parquet", bytes([n]) * 1000)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert local_bucket.read("curated/t/part-00000.parquet") in {bytes([n]) * 1000 for n in range(4)}
    assert [p.name for p in Path(local_bucket.root, "curated/t").iterdir()] == ["part-00000.parquet"]
