"""Big jobs on one real `httpov web --public-read` process (cheroot, real Redis, local storage): a job's page lists its
frames in frame order, 100 a page (?page=N), whatever order its batches finished in; a big job's page stays small;
a bad page number is 400 and one past the last 404; thumbnails carry their result's tag (ETag: 304 when the browser's
copy is current, cached for good when asked with the tag the page links); the jobs page lists 50 jobs a page. Another
user sees a job's progress and pages, never its pictures (403). No render node: frames are stored and recorded as a
render node would."""
from __future__ import annotations

import io
import json
import re

import pytest
from PIL import Image

from tests.conftest import write_scene
from tests.store.test_web_signin import Server
from tests.stored import store_batch
from tests.webapp import web_farm

SIDE = 8  # pixels: the frames
PER_BATCH = 50


settings, client, server = web_farm("big-jobs", ("bob", "carol"), "--public-read", signed_in=True)


def _png(n: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (n % 256, 0, 0)).save(out, "PNG")
    return out.getvalue()


def _finish(client, job: str, batch: str, store_zip: bool = True) -> None:
    """Store (unless not `store_zip`) and record one batch as a render node does, with a result name of its own."""
    first, last = (int(part[1:]) for part in batch.split("-")[:2])
    frames = {f"scene_{n:04d}.png": _png(n) for n in range(first, last + 1)} if store_zip else None
    store_batch(client, job, batch, frames, f"r{first}", log=False)


def _job(client, folder, frames: int, done: int, store_zip: bool = True) -> str:
    """bob's job of `frames` frames, PER_BATCH a batch (and its preview frames on their own: plan.preview_frames);
    its batches of frames up to `done` done, newest first."""
    scene = write_scene(folder, "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        f"Width={SIDE}\nHeight={SIDE}\nInitial_Frame=1\nFinal_Frame={frames}\n")
    job = client.submit(scene, user="bob", count=PER_BATCH).spec.id
    client.store.transition(job, "running")
    for batch in reversed([b for b in client.store.spec(job).batches if int(b.split("-")[1]) <= done]):
        _finish(client, job, batch, store_zip)
    return job


@pytest.fixture(scope="module")
def job(client, tmp_path_factory) -> str:
    """bob's 250-frame job, its batches finished newest first, the last one (201-250) not at all."""
    return _job(client, tmp_path_factory.mktemp("scene"), 250, 200)


def get(server: Server, path: str, who: str | None, headers: dict[str, str] | None = None,
        accept: str = "text/html") -> tuple[int, dict[str, str], bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sent = {"Accept": accept, **(headers or {})}
    if who:
        sent["Cookie"] = server.cookies[who]  # type: ignore[attr-defined]
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def grid(page: bytes) -> list[tuple[str, int]]:
    """The frame grid's places in page order: ('a', n) for a rendered frame (a link), ('span', n) for one to come."""
    return [(kind.decode(), int(n)) for kind, n in re.findall(rb'<(a|span) class="frame[^"]*" id="frame-(\d+)"', page)]


def test_a_job_page_lists_its_frames_in_frame_order_100_a_page(server, job):
    status, _, first = get(server, f"/jobs/{job}", "bob")
    assert status == 200, first[:500]
    assert grid(first) == [("a", n) for n in range(1, 101)]  # in order, though 151-200 finished first
    status, _, second = get(server, f"/jobs/{job}?page=2", "bob")
    assert status == 200
    assert grid(second) == [("a", n) for n in range(101, 201)]
    status, _, third = get(server, f"/jobs/{job}?page=3", "bob")
    assert grid(third) == [("span", n) for n in range(201, 251)]  # not rendered yet: places kept for them
    for page, html in ((1, first), (2, second), (3, third)):
        assert f'aria-current="page" href="/jobs/{job}?page={page}"'.encode() in html
    assert f'rel="next" href="/jobs/{job}?page=2"'.encode() in first
    assert f'rel="prev" href="/jobs/{job}?page=1"'.encode() in second
    assert b'rel="next"' not in third
    assert b'loading="lazy"' in first
    # the live grid asks for its page's rendered frames only
    frames = {n: get(server, f"/api/jobs/{job}/frames?page={n}", "bob", accept="application/json") for n in (2, 3, 4)}
    assert json.loads(frames[2][2]) == list(range(101, 201)) and json.loads(frames[3][2]) == []
    assert frames[4][0] == 404


@pytest.mark.parametrize(("page", "code", "said"), [("4", 404, b"no page 4"), ("99999", 404, b"pages 1-3"),
                                                    ("0", 400, b"not a page number"), ("two", 400, b"pages 1-3")])
def test_a_page_number_out_of_range_is_refused_clearly(server, job, page, code, said):
    status, _, body = get(server, f"/jobs/{job}?page={page}", "bob")
    assert status == code, body[:500]
    assert said in body


def test_a_big_jobs_page_is_bounded(server, client, tmp_path):
    big = _job(client, tmp_path / "big", 2000, 2000, store_zip=False)  # 2000 frames rendered
    status, _, body = get(server, f"/jobs/{big}", "bob")
    assert status == 200
    assert len(grid(body)) == 100
    assert len(body) < 60_000, len(body)
    status, _, last = get(server, f"/jobs/{big}?page=20", "bob")
    assert grid(last)[-1] == ("a", 2000)


def test_a_thumbnail_carries_its_results_tag_and_is_cached_for_good_at_the_pages_address(server, job):
    _, _, page = get(server, f"/jobs/{job}?page=2", "bob")
    link = re.search(rb'src="(/jobs/' + job.encode() + rb'/thumbs/150\.png\?v=([0-9a-f]+))"', page)
    assert link, page[:2000]
    address, tag = link.group(1).decode(), link.group(2).decode()
    status, headers, body = get(server, address, "bob")
    assert status == 200 and body.startswith(b"\x89PNG")
    assert headers["ETag"] == f'"{tag}"'
    assert "immutable" in headers["Cache-Control"] and "private" in headers["Cache-Control"]
    with Image.open(io.BytesIO(body)) as image:
        assert image.getpixel((0, 0))[:3] == (150, 0, 0)  # frame 150's own picture
    status, headers, body = get(server, f"/jobs/{job}/thumbs/150.png", "bob", {"If-None-Match": f'"{tag}"'})
    assert status == 304 and body == b""
    assert headers["Cache-Control"] == "private, no-cache"  # no tag in the address: asked again each time
    status, _, body = get(server, f"/jobs/{job}/thumbs/150.png", "bob", {"If-None-Match": '"elsewhere"'})
    assert status == 200 and body.startswith(b"\x89PNG")


def test_another_user_sees_the_pages_but_not_the_pictures(server, job):
    status, _, page = get(server, f"/jobs/{job}?page=2", "carol")
    assert status == 200
    assert grid(page) == [] and b'id="no-pictures"' in page
    assert get(server, f"/jobs/{job}?page=4", "carol")[0] == 404
    _, _, own = get(server, f"/jobs/{job}?page=2", "bob")
    address = re.search(rb'src="(/jobs/[^"]+/thumbs/150\.png[^"]*)"', own).group(1).decode()  # type: ignore[union-attr]
    for who in ("carol", None):
        status, headers, body = get(server, address, who, accept="application/json")
        assert status == 403, (who, body[:300])
        assert "immutable" not in headers.get("Cache-Control", "")
        assert get(server, f"/jobs/{job}/frames/150.png", who, accept="application/json")[0] == 403


def test_the_jobs_page_lists_50_jobs_a_page_newest_first(server, client, settings, tmp_path):
    scene = write_scene(tmp_path / "one", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        f"Width={SIDE}\nHeight={SIDE}\n")
    for _ in range(55):
        client.submit(scene, user="bob", count=1)
    newest_first = client.store.job_ids()[::-1]
    cards = []
    for page in (1, 2):
        status, _, body = get(server, f"/?page={page}" if page > 1 else "/", "carol")
        assert status == 200, body[:300]
        cards.append(re.findall(rb'<div class="job" id="job-([A-Za-z0-9_-]+)"', body))
    assert [c.decode() for c in cards[0]] == newest_first[:50]
    assert [c.decode() for c in cards[1]] == newest_first[50:100]
    _, _, filtered = get(server, "/?user=bob&page=2", "carol")  # a filter reads jobs until the page is found
    assert [c.decode() for c in re.findall(rb'<div class="job" id="job-([A-Za-z0-9_-]+)"', filtered)] == \
        newest_first[50:100]
    assert b'href="/?user=bob"' in filtered  # the newer page keeps the filter
    status, _, body = get(server, "/?page=99", "carol")
    assert status == 404 and b"no page 99" in body
    assert get(server, "/?page=x", "carol")[0] == 400
    # the page's live updates ask for that page's jobs only
    status, _, body = get(server, "/api/jobs?limit=50&skip=50", "carol", accept="application/json")
    assert status == 200
    assert {v["id"] for v in json.loads(body)} == set(newest_first[50:100])


def _lanes(page: bytes, figure: str) -> dict[str, bytes]:
    """The picture `figure`'s lanes: node -> its markup."""
    svg = re.search(rb'<figure class="chart" id="' + figure.encode() + rb'">(.*?)</figure>', page, re.S)
    assert svg, page[-2000:]
    return {node.decode(): body for node, body in re.findall(rb'<g class="lane" data-node="([^"]*)">(.*?)</g>',
                                                               svg.group(1), re.S)}


def test_a_job_page_draws_its_timeline_with_failures_and_retries(server, client, tmp_path):
    """The job page's timeline from the stored records: a lane per node, a failure and a retry marked where they
    happened; a node's name is text (escaped); anyone who may see the job's progress sees it, nobody else."""
    scene = write_scene(tmp_path, "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        f"Width={SIDE}\nHeight={SIDE}\nInitial_Frame=1\nFinal_Frame=4\n")
    job = client.submit(scene, user="bob", count=1).spec.id
    client.store.transition(job, "running")
    b1, b2, b3, b4 = client.store.spec(job).batches
    store_batch(client, job, b1, None, "r1", node="n1@h")
    store_batch(client, job, b2, None, "r2", node="<b>n2</b>@h")
    assert client.store.start_batch(job, b3, "t3", "n1@h", 600.0) == "ok"
    client.store.fail_batch(job, b3, "povray said no", [], final=False, node="n1@h")
    client.store.count_requeue(job, b4)  # lost with its node once, then done on n2
    store_batch(client, job, b4, None, "r4", node="<b>n2</b>@h")
    for who in ("bob", "carol", None):  # the owner, another user, a --public-read reader: progress, all the same
        status, _, page = get(server, f"/jobs/{job}", who)
        assert status == 200, page[:300]
        lanes = _lanes(page, "timeline")
        assert sorted(lanes) == ["&lt;b&gt;n2&lt;/b&gt;@h", "n1@h"], who  # the name escaped, never markup
        n1, n2 = lanes["n1@h"], lanes["&lt;b&gt;n2&lt;/b&gt;@h"]
        assert n1.count(b'class="mark failed"') == 1 and b"batch " + b3.encode() + b" failed" in n1
        assert n2.count(b'class="mark retried"') == 1 and b'class="mark failed"' not in n2
        assert n1.count(b'class="done"') == 1 and n2.count(b'class="done"') >= 1
        assert b'role="img"' in page and b"3 batches done and 0 rendering on 2 render nodes, 1 failed, 1 retried" \
            in page  # its text alternative
        status, _, drawn = get(server, f"/api/jobs/{job}/timeline", who, accept="application/json")
        assert status == 200  # its geometry, for the live page to draw again: the same lanes, names as data
        chart = json.loads(drawn)
        assert [lane["name"] for lane in chart["lanes"]] == ["<b>n2</b>@h", "n1@h"]
        assert chart["summary"].startswith("3 batches done and 0 rendering on 2 render nodes, 1 failed, 1 retried")
    from tests.webapp import page as app_page  # a farm's web without --public-read: nobody signed in sees nothing

    status, body = app_page(client, f"/jobs/{job}", public_read=False)
    assert status in (302, 401) and "timeline" not in body and "n1@h" not in body
    status, body = app_page(client, f"/api/jobs/{job}/timeline", public_read=False)
    assert status == 401 and "n1@h" not in body


def test_the_nodes_page_draws_the_farms_use(server, client):
    """Each render node's processes busy a minute, as its heartbeats said (node-use), drawn on the nodes page."""
    import time

    now = time.time()
    minute = now - now % 60
    client.store.heartbeat("use@h", processes=4, busy=(minute - 60, 2.0))
    client.store.heartbeat("use@h", processes=4, busy=(minute, 1.0))
    client.store.heartbeat("use@h", processes=4, busy=(minute, 4.0))  # the minute's mean so far: replaces the last
    assert client.store.node_use(now - 3600)[0]["use@h"] == [(minute - 60, 2.0), (minute, 4.0)]
    status, _, page = get(server, "/nodes", "carol")
    assert status == 200
    use = _lanes(page, "farm-use")["use@h"]
    top = float(re.search(rb'<rect x="[\d.]+" y="([\d.]+)"', use).group(1))  # type: ignore[union-attr]
    outline = re.search(rb'<path class="busy" d="M[\d.]+ ([\d.]+)V([\d.]+)H[\d.]+V([\d.]+)H', use)
    assert outline, use  # from the lane's base, up to half its height (2 of 4 busy), then to its top (4 of 4)
    assert [float(y) - top for y in outline.groups()] == [22.0, 11.0, 0.0]
    assert b"3.0 of 4 processes busy on average, 4 at most" in use
    assert b"processes busy on 1 render node over the last 6 hours" in page
    from tests.webapp import page as app_page  # without --public-read, nobody signed in sees no node

    status, body = app_page(client, "/nodes", public_read=False)
    assert status in (302, 401) and "use@h" not in body and "farm-use" not in body


def test_a_finished_jobs_page_is_read_again_after_a_retry(server, client, tmp_path):
    """A finished job's view and timeline are remembered by the web server under the job's stamp: its page shows
    what it is after a retry and after the retried batch is done, never the page remembered before. Another user
    sees the same progress and may not retry it."""
    from httpov.access import Identity, Role
    from httpov.errors import ForbiddenError

    scene = write_scene(tmp_path, "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        f"Width={SIDE}\nHeight={SIDE}\nInitial_Frame=1\nFinal_Frame=3\n")
    job = client.submit(scene, user="bob", count=1).spec.id
    client.store.transition(job, "running")
    b1, b2, b3 = client.store.spec(job).batches
    store_batch(client, job, b1, None, "r1", node="n1@h")
    store_batch(client, job, b2, None, "r2", node="n1@h")
    assert client.store.start_batch(job, b3, "t3", "n2@h", 600.0) == "ok"
    client.store.fail_batch(job, b3, "povray said no", [], final=True, node="n2@h")

    def shown(who: str) -> tuple[str, int, bytes]:
        status, _, page = get(server, f"/jobs/{job}", who)
        assert status == 200, page[:300]
        found = re.search(rb'data-frames="(\d+)" data-state="(\w+)"', page)
        assert found, page[:1000]
        return found.group(2).decode(), int(found.group(1)), page

    for _ in range(2):  # read, then remembered: the same either way
        assert shown("bob")[:2] == ("failed", 2)
    with pytest.raises(ForbiddenError):
        client.retry(job, who=Identity("carol", Role.USER))
    assert shown("carol")[:2] == ("failed", 2)
    assert client.retry(job, who=Identity("bob", Role.USER)) == 1
    assert shown("bob")[:2] == ("running", 2)
    store_batch(client, job, b3, None, "r3", node="n2@h")
    state, done, page = shown("carol")
    assert (state, done) == ("done", 3)
    assert b"3 batches done and 0 rendering on 2 render nodes" in page  # the timeline, drawn again
    assert shown("bob")[:2] == ("done", 3)
