"""The frame viewer on one real `httpov web --public-read` process (cheroot, real Redis, local storage):
/jobs/ID/frames/N shows frame N with previous/next links, fit or 1:1, the batch, node, render time and the last
lines of povray's log (escaped, bounded), and links the full PNG; /api/jobs/ID/frames/N is the same as JSON; a
sliced frame says which node rendered which rows. Another user, and a reader without an account, get 403: a job's
frames and logs are its owner's and the admins'. No render node: batches are stored and recorded as a node would."""
from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from httpov.paths import frame_key
from httpov.web.source import LOG_LINE_CHARS, LOG_LINES
from httpov.worker.povray import frame_file
from tests.conftest import write_scene
from tests.store.test_web_big_jobs import get
from tests.stored import store_batch
from tests.webapp import web_farm

SIDE = 8
SCENE = "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n"
HOSTILE = "<script>window.pwned=1</script> & \x1b]0;title\x07"
# povray's log of a run of two frames: each frame's part starts 'Rendering frame K of N'
SECOND = ["Rendering frame 2 of 2", *(f"line {n}" for n in range(1, 101)), HOSTILE, "x" * 1000]
LOG = "\n".join(["banner", "Rendering frame 1 of 2", "frame one's line", *SECOND]) + "\n"


settings, client, server = web_farm("viewer", ("bob", "carol"), "--public-read", signed_in=True)


def _png(colour: tuple[int, int, int], height: int = SIDE) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, height), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def job(client, tmp_path_factory) -> str:
    """bob's job of frames 1-3, two a batch: frames 1-2 rendered on alpha@h (a long, hostile log), 3 not yet."""
    scene = write_scene(tmp_path_factory.mktemp("scene"), SCENE,
                        f"Width={SIDE}\nHeight={SIDE}\nInitial_Frame=1\nFinal_Frame=3\n")
    job = client.submit(scene, user="bob", count=2).spec.id
    client.store.transition(job, "running")
    first = client.store.spec(job).batches[0]
    store_batch(client, job, first, {f"scene_{n:04d}.png": _png((0, 255, 0)) for n in (1, 2)}, "r1", log=LOG,
                node="alpha@h")
    return job


@pytest.fixture(scope="module")
def sliced(client, tmp_path_factory) -> str:
    """bob's one-frame job in two slices of rows, rendered on alpha@h (rows 1-32) and beta@h (33-64), stitched."""
    scene = write_scene(tmp_path_factory.mktemp("sliced"), SCENE, f"Width={SIDE}\nHeight=64\n")
    spec = client.submit(scene, user="bob", slices=2).spec
    client.store.transition(spec.id, "running")
    for batch, node in zip(spec.batches, ("alpha@h", "beta@h")):
        store_batch(client, spec.id, batch, {}, "r1", log=f"slice {batch} rendered\n", node=node)
    client.storage.put_bytes(frame_key(spec.id, frame_file(spec.name, 1, spec.final)), _png((0, 0, 255), 64))
    return spec.id


def test_the_viewer_shows_a_frame_what_rendered_it_and_its_log(server, job):
    status, _, raw = get(server, f"/jobs/{job}/frames/2", "bob")
    page = raw.decode()
    assert status == 200, page[:500]
    assert f'<img id="image" src="/jobs/{job}/frames/2.png" width="{SIDE}" height="{SIDE}"' in page
    assert f'id="prev" rel="prev" href="/jobs/{job}/frames/1"' in page
    assert f'id="next" rel="next" href="/jobs/{job}/frames/3"' in page
    assert f'id="full" href="/jobs/{job}/frames/2.png"' in page
    assert f'id="job-link" href="/jobs/{job}?page=1#frame-2"' in page
    assert 'class="fit"' in page and f'id="zoom" href="/jobs/{job}/frames/2?size=actual">1:1<' in page
    assert "<td>frames 1-2</td><td>all</td><td>alpha@h</td><td>0.1 s for 2 frames" in page
    assert "/static/viewer.js" in page
    # povray's log: its last lines only, each cut short, markup and control characters shown as text
    log = re.search(r'<pre class="povlog">(.*?)</pre>', page, re.S).group(1).splitlines()
    assert len(log) == LOG_LINES and log[0] == SECOND[-LOG_LINES] and f"(last {LOG_LINES} lines)" in page
    assert log[-2] == "&lt;script&gt;window.pwned=1&lt;/script&gt; &amp; \\x1b]0;title\\x07"
    assert log[-1] == "x" * LOG_LINE_CHARS + "…"
    assert "<script>window" not in page and "\x1b" not in page
    # the ends of the job and a frame not rendered yet
    first = get(server, f"/jobs/{job}/frames/1?size=actual", "bob")[2].decode()
    assert re.search(r'<pre class="povlog">(.*?)</pre>', first, re.S).group(1).splitlines() == [
        "banner", "Rendering frame 1 of 2", "frame one&#39;s line"]  # the first frame's part of the batch's log
    assert 'id="prev" rel="prev" aria-disabled="true"' in first and f'href="/jobs/{job}/frames/2?size=actual"' in first
    assert 'class="actual"' in first and f'id="zoom" href="/jobs/{job}/frames/1">fit<' in first
    status, _, raw = get(server, f"/jobs/{job}/frames/3", "bob")
    last = raw.decode()
    assert status == 200 and "frame 3 is not rendered yet" in last and 'id="next" rel="next" aria-disabled' in last
    assert "no batch holding this frame is done" in last and 'id="full" aria-disabled="true"' in last
    for missing in (0, 4):
        status, _, raw = get(server, f"/jobs/{job}/frames/{missing}", "bob")
        assert status == 404 and b"renders frames 1-3" in raw
    # the job's grid opens the viewer
    assert f'href="/jobs/{job}/frames/1"'.encode() in get(server, f"/jobs/{job}", "bob")[2]


def test_the_viewer_json_and_the_full_png(server, job):
    status, _, raw = get(server, f"/api/jobs/{job}/frames/2", "bob", accept="application/json")
    assert status == 200
    frame = json.loads(raw)
    assert (frame["frame"], frame["prev"], frame["next"], frame["rendered"], frame["grid_page"]) == (2, 1, 3, True, 1)
    assert frame["png"] == f"/jobs/{job}/frames/2.png" and frame["page"] == f"/jobs/{job}/frames/2"
    [part] = frame["parts"]
    assert (part["label"], part["node"], part["rows"], part["frames"]) == ("frames 1-2", "alpha@h", None, 2)
    assert len(part["lines"]) == LOG_LINES and part["lines_left_out"] == len(SECOND) - LOG_LINES
    assert part["lines"][-2].startswith("<script>") and "\x1b" not in part["lines"][-2]  # text: the page sets it so
    status, headers, png = get(server, frame["png"], "bob", accept="image/png")
    assert status == 200 and headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (SIDE, SIDE) and image.convert("RGB").getpixel((0, 0)) == (0, 255, 0)
    status, _, raw = get(server, f"/api/jobs/{job}/frames/3", "bob", accept="application/json")
    assert status == 200 and json.loads(raw)["rendered"] is False and json.loads(raw)["next"] is None


@pytest.mark.parametrize("who", ["carol", None])
def test_another_user_gets_no_frame_and_no_log(server, job, who):
    for path, accept in ((f"/jobs/{job}/frames/2", "text/html"), (f"/api/jobs/{job}/frames/2", "application/json"),
                         (f"/jobs/{job}/frames/2.png", "image/png")):
        status, _, raw = get(server, path, who, accept=accept)
        assert status == 403, (path, status)
        assert b"line 100" not in raw and b"alpha@h" not in raw
    status, _, raw = get(server, f"/jobs/{job}", who)  # the job's progress, without the viewer's links
    assert status == 200 and f"/jobs/{job}/frames/1".encode() not in raw


def test_a_sliced_frame_says_which_node_rendered_which_rows(server, sliced):
    status, _, raw = get(server, f"/api/jobs/{sliced}/frames/1", "bob", accept="application/json")
    frame = json.loads(raw)
    assert status == 200 and frame["sliced"] and frame["rendered"]
    assert [(p["rows"], p["node"], p["lines"]) for p in frame["parts"]] == [
        ([1, 32], "alpha@h", [f"slice {frame['parts'][0]['batch']} rendered"]),
        ([33, 64], "beta@h", [f"slice {frame['parts'][1]['batch']} rendered"])]
    page = get(server, f"/jobs/{sliced}/frames/1", "bob")[2].decode()
    assert "which node rendered which rows" in page
    assert "<td>1-32</td><td>alpha@h</td>" in page and "<td>33-64</td><td>beta@h</td>" in page
    assert '<div class="slice" data-first="33" data-last="64"><span>rows 33-64: beta@h</span></div>' in page
    status, _, png = get(server, frame["png"], "bob", accept="image/png")
    with Image.open(io.BytesIO(png)) as image:  # the stitched frame
        assert status == 200 and image.convert("RGB").getpixel((0, 63)) == (0, 0, 255)
    assert get(server, f"/jobs/{sliced}/frames/1", "carol")[0] == 403
