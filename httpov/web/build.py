"""One download of a job built in a process of its own (`python -m httpov.web.build`, started by
httpov.web.downloads) at a low CPU priority: the web server's interpreter and CPU stay with its pages."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from httpov.access import Identity, Role
from httpov.errors import HttpovError

#: How much nicer than the web server a build runs (os.nice).
NICE = 10


def build_download(client: Any, job_id: str, what: str, key: str, who: Identity | None) -> None:
    """Fetch the job's frames (Client.fetch: every result checked), make `what` of them (frames.zip, results.zip with
    the logs, contact-sheet.png, video.mp4) and store it under `key`."""
    from httpov import media

    max_pixels = client.settings.max_pixels
    with tempfile.TemporaryDirectory(prefix="httpov-web-build-") as tmp:
        folder = Path(tmp) / "frames"
        images = client.fetch(job_id, folder, who=who)
        made = Path(tmp) / what
        if what in ("frames.zip", "results.zip"):
            with zipfile.ZipFile(made, "w", zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
                for image in images:
                    zf.write(image, image.name)
                if what == "results.zip":
                    for entry in sorted((folder / "logs").iterdir()):
                        zf.write(entry, f"logs/{entry.name}")
        elif what == "video.mp4":
            media.encode(images, made, max_pixels=max_pixels)
        else:
            media.contact_sheet(images, made, max_pixels=max_pixels)
        client.storage.put_file(key, made)


def identity_text(who: Identity | None) -> str:
    """`who` as one argument of the build's command line."""
    return json.dumps(None if who is None else {"name": who.name, "role": who.role.value, "operator": who.operator,
                                                "address": who.address})


def main(argv: list[str]) -> int:
    """Build JOB's WHAT under KEY as IDENTITY (identity_text), with the settings of the environment the web server
    gave; an httpov error is printed as the web's JSON error ({"error", "hint", "kind"}) and exits 1."""
    from httpov.client import Client
    from httpov.settings import Settings

    job_id, what, key, identity = argv
    os.nice(NICE)
    fields = json.loads(identity)
    who = None if fields is None else Identity(fields["name"], Role(fields["role"]), fields["operator"],
                                               fields["address"])
    try:
        build_download(Client(Settings.from_env()), job_id, what, key, who)
    except HttpovError as exc:
        print(json.dumps({"error": str(exc), "hint": exc.hint, "kind": type(exc).__name__}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
