"""A pipeline of two jobs through httpov's Python API: a quick preview of a scene, then the full render, which the
farm holds (state waiting) until the preview is done and fails without rendering if the preview fails. The script
prints both jobs' events as they come and fetches both jobs' frames.

    python examples/pipeline.py examples/spinner --out out/pipeline

It reaches the farm as `httpov` does: HTTPOV_SERVER and HTTPOV_TOKEN for a farm's web API, else this machine's
Redis and storage (HTTPOV_BROKER_URL, ...). Exit codes are httpov's (README: Exit codes)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from httpov import Farm
from httpov.errors import HttpovError
from httpov.text import shown


def main() -> int:
    ask = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ask.add_argument("scene", type=Path, nargs="?", default=Path(__file__).parent / "spinner")
    ask.add_argument("--out", type=Path, default=Path("out/pipeline"), help="where the frames go")
    ask.add_argument("--width", type=int, default=160)
    ask.add_argument("--height", type=int, default=120)
    ask.add_argument("--frames", type=int, default=24)
    given = ask.parse_args()
    try:
        farm = Farm.from_env()
        preview = farm.submit(given.scene, name="preview", frames=given.frames, width=max(1, given.width // 2),
                              height=max(1, given.height // 2))
        final = farm.submit(given.scene, name="final", frames=given.frames, width=given.width,
                            height=given.height, after=[preview])
        print(f"preview {preview.id}: {preview.frames} frame(s) at {preview.width}x{preview.height}")
        print(f"final {final.id}: {final.frames} frame(s) at {final.width}x{final.height}, after {preview.id}")
        for event in farm.events(preview, final, follow=True, timeout=3600):  # until both have ended
            print(f"event {event.kind} {event.job}" + (f" {shown(event.detail)}" if event.detail else ""))
        for job in (preview, final):
            view = job.wait()  # JobFailedError unless every frame rendered
            frames = job.fetch(given.out / job.name)
            print(f"{job.name} {job.id} {view.state}: {len(frames)} frame(s) in {given.out / job.name}")
    except HttpovError as exc:
        print(f"error: {shown(exc)}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
