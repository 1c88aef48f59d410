"""Benchmark (not a test): what issue #11's oversized inputs cost now, each refused in a fresh process.

Prints, per attack, how long the refusal took (setup, such as writing the bomb, not counted), the process's
peak memory and the message. Uses a private redis-server; nothing is rendered. Run it from the checkout so this
httpov is the one imported; code without the limits takes gigabytes and minutes on the first attack.

    PYTHONPATH=. python scripts/bench_limits.py
"""
from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from httpov.errors import HttpovError
from tests.bombs import bomb_png


def _submit(url: str, tmp: Path, **options: int) -> Callable[[], object]:
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.settings import Settings

    scene = tmp / "scene"
    scene.mkdir(exist_ok=True)
    (scene / "scene.pov").write_text("#version 3.7;\nbackground { color rgb 1 }\n")
    (scene / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=8\nHeight=8\n")
    settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), cache_dir=tmp / "cache")
    client = Client(settings, make_app(settings))
    return lambda: client.submit(scene, **options)


def _fetch_zip_bomb(tmp: Path) -> Callable[[], object]:
    """A 3 MB batch zip whose frame member unpacks to 3 GiB (fetch took 6.3 GB before)."""
    from httpov.results import unpack_batch

    bomb = tmp / "f000001-000001.zip"
    info = zipfile.ZipInfo("bomb_0001.png")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(bomb, "w") as zf, zf.open(info, "w", force_zip64=True) as member:
        block = bytes(64 * 1024**2)
        for _ in range(48):
            member.write(block)
    (tmp / "out" / "logs").mkdir(parents=True)
    return lambda: unpack_batch(bomb, "jobs/x/batches/f000001-000001.zip", 320, 240, tmp / "out", tmp / "out" / "logs")


def _contact_sheet(tmp: Path, side: int) -> Callable[[], object]:
    from httpov import media

    frame = tmp / "big_0001.png"
    frame.write_bytes(bomb_png(side, side))
    return lambda: media.contact_sheet([frame], tmp / "sheet.png")


def _measure(name: str, attack: Callable[[Path], Callable[[], object]], queue: multiprocessing.Queue) -> None:
    with tempfile.TemporaryDirectory(prefix="httpov-bench-limits-") as tmp:
        act = attack(Path(tmp))
        start = time.monotonic()
        try:
            act()
            outcome = "ACCEPTED"
        except HttpovError as exc:
            outcome = f"refused: {exc}"
        seconds = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(f"{name}: {seconds:.3f} s, peak {peak:.0f} MiB, {outcome}")


def main() -> None:
    from httpov.local_farm import embedded_redis

    with tempfile.TemporaryDirectory(prefix="httpov-bench-limits-redis-") as name, embedded_redis(Path(name)) as url:
        attacks: dict[str, Callable[[Path], Callable[[], object]]] = {
            "submit --frames 100000000": lambda tmp: _submit(url, tmp, frames=100_000_000),
            "submit 1,000,000 frames --count 1": lambda tmp: _submit(url, tmp, frames=1_000_000, count=1),
            "fetch: 3 MB zip, 3 GiB member": _fetch_zip_bomb,
            "contact sheet: 169-megapixel PNG": lambda tmp: _contact_sheet(tmp, 13_000),
            "contact sheet: 900-megapixel PNG": lambda tmp: _contact_sheet(tmp, 30_000),
        }
        context = multiprocessing.get_context("fork")
        for label, attack in attacks.items():
            queue = context.Queue()
            proc = context.Process(target=_measure, args=(label, attack, queue))
            proc.start()
            print(queue.get())
            proc.join()


if __name__ == "__main__":
    main()
