"""Benchmark (not a test): the frame viewer's server time (#26 item 2), on a real `httpov web` process over the
shared Redis (a private key prefix) and local storage.

A finished job of `--frames` frames of 320x240 noise (PNGs that do not compress: about 230 kB each), `--batch` frames
a batch, each batch's povray log holding a part of 60 lines per frame as a run of povray writes it, is stored and
recorded as render nodes leave it (nothing is rendered). Reports the wall time of a GET on loopback of the viewer's
page and of its JSON: the first frame of a batch (its zip read from storage for its log), then the batch's other
frames (each frame's part of the log remembered), then the full PNG a viewer's <img> asks for.

    python scripts/bench_viewer.py [--frames 100] [--batch 50]
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--frames", type=int, default=100)
parser.add_argument("--batch", type=int, default=50)
ARGS = parser.parse_args()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _noise(n: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((320, 240), 64 + n % 64).convert("RGB").save(out, "PNG")
    return out.getvalue()


def _log(frames: int) -> str:
    lines = ["POV-Ray 3.7 banner"]
    for k in range(1, frames + 1):
        lines += [f"Rendering frame {k} of {frames}", *(f"  statistic {i} of frame {k}: {i * k}" for i in range(59))]
    return "\n".join(lines) + "\n"


def main() -> None:
    from httpov.celery import make_app
    from httpov.client import Client
    from tests.conftest import private_settings
    from tests.store.test_web_big_jobs import get
    from tests.store.test_web_signin import serving
    from tests.stored import store_batch

    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp, private_settings(Path(tmp)) as settings:
        client = Client(settings, make_app(settings))
        scene = Path(tmp) / "scene"
        scene.mkdir()
        (scene / "scene.pov").write_text("#version 3.7;\nbackground { color rgb <0, 1, 0> }\n")
        (scene / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth=320\nHeight=240\nInitial_Frame=1\n"
                                       f"Final_Frame={ARGS.frames}\n")
        job = client.submit(scene, user="bob", count=ARGS.batch).spec.id
        client.store.transition(job, "running")
        noise = [_noise(n) for n in range(8)]
        for batch in client.store.spec(job).batches:
            first, last = (int(part[1:]) for part in batch.split("-")[:2])
            store_batch(client, job, batch, {f"scene_{n:04d}.png": noise[n % 8] for n in range(first, last + 1)},
                        f"r{first}", log=_log(last - first + 1), node="bench@node")
        print(f"job {job}: {ARGS.frames} frames of 320x240, {ARGS.batch} a batch "
              f"({ARGS.batch * len(noise[0]) // 1024} kB a batch zip)")
        runs = serving(Path(tmp) / "web", settings, ("bob",), signed_in=True)
        server = next(runs)
        try:
            def timed(path: str, accept: str) -> float:
                start = time.perf_counter()
                status, _, body = get(server, path, "bob", accept=accept)
                assert status == 200, (path, status, body[:300])
                return time.perf_counter() - start

            for kind, prefix, accept in (("page", "", "text/html"), ("JSON", "/api", "application/json")):
                cold = [timed(f"{prefix}/jobs/{job}/frames/{b}", accept) for b in range(1, ARGS.frames, ARGS.batch)]
                if kind == "page":  # the JSON's first frames were read for the page already: warm for it too
                    print(f"viewer {kind}, a batch's first frame (its zip read): median "
                          f"{statistics.median(cold) * 1000:.0f} ms, worst {max(cold) * 1000:.0f} ms")
                warm = [timed(f"{prefix}/jobs/{job}/frames/{n}", accept) for n in range(1, ARGS.frames + 1)
                        if (n - 1) % ARGS.batch]
                print(f"viewer {kind}, the batch's other frames: median {statistics.median(warm) * 1000:.1f} ms, "
                      f"worst {max(warm) * 1000:.1f} ms")
            png = [timed(f"/jobs/{job}/frames/{n}.png", "image/png") for n in range(1, min(ARGS.frames, 20) + 1)]
            print(f"the full PNG (its zip read): median {statistics.median(png) * 1000:.0f} ms")
        finally:
            next(runs, None)  # stops the server


if __name__ == "__main__":
    main()
