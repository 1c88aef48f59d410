"""A batch stored and recorded done as a render node leaves it, without povray: for tests and benchmarks that need
finished jobs (pages, downloads) faster than rendering them."""
from __future__ import annotations

import io
import time
import zipfile
from typing import Any

from httpov import paths


def store_batch(client: Any, job: str, batch: str, frames: dict[str, bytes] | None, result: str,
                log: bool | str = True, node: str = "n@h") -> None:
    """Store the batch's zip under its own `result` name (`frames`: member name -> PNG bytes, then the batch's log
    unless not `log`, `log` itself when a text; nothing stored when None) and record the batch done, as a render
    node does."""
    first, last = (int(part[1:]) for part in batch.split("-")[:2])
    size = 0
    if frames is not None:
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as zf:
            for name, data in frames.items():
                zf.writestr(name, data)
            if log:
                zf.writestr(f"{batch}.log", log if isinstance(log, str) else "povray's log\n")
        client.storage.put_bytes(paths.batch_key(job, batch, result), zipped.getvalue())
        size = len(zipped.getvalue())
    assert client.store.start_batch(job, batch, result, node, 600.0) == "ok"
    client.store.finish_batch(job, batch, {"node": node, "seconds": 0.1, "frames": last - first + 1,
                                           "finished": time.time(), "result": result, "bytes": size},
                              list(range(first, last + 1)), result)
