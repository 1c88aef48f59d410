"""Who may do what, as one real `httpov web` server (cheroot, real Redis) answers it: each role (admin, user,
viewer) x each page and endpoint that touches a job x the caller's own job and another's. Every refused write
changes nothing (the job's record in Redis is the same, byte for byte). No render node: the jobs are submitted with
nobody to render them, and one rendered frame per owner is put in storage as a render node would put it.

Also: an accounts file from before roles is given them when the server starts (one log line); a role change ends the
account's sessions; the CLI with direct Redis access acts as an admin (the local operator), as README says."""
from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import redis
import requests
from click.testing import CliRunner
from PIL import Image

from httpov.access import Identity, Role
from httpov.cli import cli
from httpov.errors import ForbiddenError
from httpov.local_farm import free_port, stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import REDIS_URL, wait_for, write_scene

PASSWORD = "correct horse battery"
ROLES = {"ada": "admin", "uma": "user", "vic": "viewer"}  # who asks; bob (a user) owns the others' jobs
OWNERS = {"own": "uma", "other": "bob"}  # whose job: the user's own, or another's (for ada and vic: both others')
SIDE = 8  # pixels: the scenes' frames


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (0, 200, 0)).save(out, "PNG")
    return out.getvalue()


class Farm:
    """The module's Redis prefix, accounts, `httpov web` process and one requests session per account."""

    def __init__(self, tmp: Path) -> None:
        from httpov.celery import make_app
        from httpov.client import Client

        tag = "httpovtest-" + secrets.token_hex(4)
        self.tmp = tmp
        self.settings = Settings(broker_url=REDIS_URL, state_url=REDIS_URL, storage=str(tmp / "storage"),
                                 prefix=tag, queue=tag, cache_dir=tmp / "cache", lease_seconds=4.0,
                                 task_time_limit=600)
        self.client = Client(self.settings, make_app(self.settings))
        self.scene = write_scene(tmp / "scene", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                                 f"Width={SIDE}\nHeight={SIDE}\n")
        self.accounts = tmp / "accounts"
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "web.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from argon2 import PasswordHasher

        from httpov.web.auth import add_user

        # a file from before roles, of one account: the server's first start makes it the farm's admin
        self.accounts.write_text(f"ada:{PasswordHasher().hash(PASSWORD)}\n")
        env = {**worker_env(self.settings), "HTTPOV_WEB_TOKENS": self.token}
        self.proc = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(self.port),
                                      "--accounts", str(self.accounts)], env=env, stdout=open(self.log, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return requests.get(f"{self.url}/login", timeout=5).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, 30, "httpov web to answer")
        for name, role in (("uma", "user"), ("vic", "viewer"), ("bob", "user")):  # read on each request
            add_user(self.accounts, name, PASSWORD, role)
        self.sessions = {name: self.sign_in(name) for name in ROLES}

    def stop(self) -> None:
        if self.proc is not None:
            stop_worker(self.proc, grace=10.0)
        print(self.log.read_text(errors="replace")[-3000:])
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{self.settings.prefix}*", count=1000))  # the queue's key too
        if keys:
            r.delete(*keys)

    def sign_in(self, name: str) -> requests.Session:
        """A browser's session of `name`, with the CSRF token its forms carry (X-CSRFToken on each POST)."""
        browser = requests.Session()
        page = browser.get(f"{self.url}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        answer = browser.post(f"{self.url}/login", data={"csrf_token": token.group(1), "user": name,
                                                          "password": PASSWORD}, allow_redirects=False, timeout=30)
        assert answer.status_code == 302, answer.text
        page = browser.get(f"{self.url}/", headers={"Accept": "text/html"}, timeout=10).text
        browser.headers["X-CSRFToken"] = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        return browser

    def job(self, owner: str, state: str = "queued") -> str:
        """A new job of `owner` (submitted by the local operator for them, nobody rendering it), in `state`:
        queued, paused, cancelled, or done (its one frame stored as a render node stores it)."""
        job = self.client.submit(self.scene, user=owner, count=1).spec.id
        if state == "paused":
            self.client.pause(job)
        elif state == "cancelled":
            self.client.cancel(job)
        elif state == "done":
            from httpov import paths
            from httpov.states import JobState

            batch = self.client.store.spec(job).batches[0]
            result = io.BytesIO()
            with zipfile.ZipFile(result, "w") as zf:
                zf.writestr("scene_1.png", _png())
                zf.writestr(f"{batch}.log", "povray's log\n")
            self.client.storage.put_bytes(paths.batch_key(job, batch), result.getvalue())
            self.client.store.transition(job, JobState.RUNNING)
            assert self.client.store.start_batch(job, batch, "tok", "n@h", 60.0) == "ok"  # the execution's lease
            self.client.store.finish_batch(job, batch, {"node": "n@h", "seconds": 0.1, "frames": 1,
                                                        "finished": time.time()}, [1], "tok")
            assert self.client.store.state(job) == "done"
        return job

    def record(self, job: str) -> dict[bytes, bytes]:
        return redis.Redis.from_url(REDIS_URL).hgetall(f"{self.settings.prefix}:job:{job}")


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    farm = Farm(tmp_path_factory.mktemp("access"))
    try:
        farm.start()
        farm.rendered = {owner: farm.job(owner, "done") for owner in OWNERS.values()}  # type: ignore[attr-defined]
        yield farm
    finally:
        farm.stop()


# --- reading: every job's progress for whoever may view; its pictures only for its owner and the admins -------
#: (path, what it is): VIEW or DOWNLOAD
READS = {
    "job page": ("/jobs/{job}", "view"),
    "job JSON": ("/api/jobs/{job}", "view"),
    "job stream": ("/api/stream/jobs/{job}", "view"),  # its live page's events: the job JSON as it changes
    "frame numbers": ("/api/jobs/{job}/frames", "view"),
    "frame": ("/jobs/{job}/frames/1.png", "download"),
    "frame viewer": ("/jobs/{job}/frames/1", "download"),  # the frame, its node and povray's log
    "frame viewer JSON": ("/api/jobs/{job}/frames/1", "download"),
    "frame thumbnail": ("/jobs/{job}/thumbs/1.png", "download"),
    "latest thumbnail": ("/thumb/{job}.png", "download"),
    "frames zip": ("/jobs/{job}/download/frames.zip", "download"),
    "contact sheet": ("/jobs/{job}/download/contact-sheet.png", "download"),
}


def _expected(name: str, kind: str, whose: str) -> int:
    role = ROLES[name]
    if role == "admin" or kind == "view":
        return 200
    return 200 if role == "user" and whose == "own" else 403


@pytest.mark.parametrize("whose", OWNERS)
@pytest.mark.parametrize("what", READS)
@pytest.mark.parametrize("name", ROLES)
def test_reads(farm, name, what, whose):
    path, kind = READS[what]
    job = farm.rendered[OWNERS[whose]]
    html = {"Accept": "text/html"} if what == "job page" else {}
    answers = []

    def answered() -> bool:  # a download is built once, off the request: 202 with Retry-After until it is
        if what == "job stream":  # its first event, then closed (429 while the streams of the last test end)
            with farm.sessions[name].get(farm.url + path.format(job=job), timeout=30, stream=True) as got:
                got.first = next((line[6:] for line in got.iter_lines(decode_unicode=True)  # type: ignore[attr-defined]
                                  if line.startswith("data: {")), None)
            answers.append(got)
            return got.status_code != 429
        answers.append(farm.sessions[name].get(farm.url + path.format(job=job), headers=html, timeout=30))
        return answers[-1].status_code != 202 or "download" not in path
    wait_for(answered, 60, f"{what} to be built")
    answer = answers[-1]
    assert answer.status_code == _expected(name, kind, whose), (name, what, whose, answer.text[:300])
    if what == "job stream":
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        assert json.loads(answer.first)["user"] == OWNERS[whose]  # type: ignore[attr-defined]
    elif answer.status_code == 403:
        assert f"{name} ({ROLES[name]}) may not download job {job} (owned by {OWNERS[whose]})" in answer.json()["error"]
    elif what == "job JSON":
        assert answer.json()["user"] == OWNERS[whose]  # the owner, as `status --json` says it
    elif what == "job page":  # another's job: progress only, no thumbnail to be refused
        pictures = _expected(name, "download", whose) == 200
        assert (f"/jobs/{job}/thumbs/1.png" in answer.text) is pictures
        assert ('id="no-pictures"' in answer.text) is not pictures
        assert f'id="owner">{OWNERS[whose]}<' in answer.text
        assert ('id="cancel"' in answer.text) is (ROLES[name] == "admin" or (name == "uma" and whose == "own"))


def test_the_jobs_list_shows_everyones_progress_and_owner_but_only_allowed_thumbnails(farm):
    for name in ROLES:
        jobs = farm.sessions[name].get(f"{farm.url}/api/jobs", timeout=30).json()
        assert {j["id"]: j["user"] for j in jobs if j["id"] in farm.rendered.values()} == \
            {job: owner for owner, job in farm.rendered.items()}
        page = farm.sessions[name].get(f"{farm.url}/", headers={"Accept": "text/html"}, timeout=30).text
        for owner, job in farm.rendered.items():
            assert (f"/thumb/{job}.png" in page) is (ROLES[name] == "admin" or owner == name), (name, owner)
    mine = farm.sessions["vic"].get(f"{farm.url}/api/jobs?user=bob", timeout=30).json()  # the filter stays
    assert mine and {j["user"] for j in mine} == {"bob"}


def test_the_jobs_list_shows_each_jobs_user_and_priority_and_why_a_failed_job_failed_to_every_reader(farm):
    job = farm.client.submit(farm.scene, user="bob", count=1, priority=7).spec.id
    batch = farm.client.store.spec(job).batches[0]
    farm.client.store.fail_batch(job, batch, "povray failed: <img src=x> \x1b[31mparse error\nsecond line",
                                 ["<b>log</b>"], True, "n@h")
    assert farm.client.store.state(job) == "failed"
    for name in ROLES:  # another user's failed job: its progress, owner, priority and why are anyone's to read
        page = farm.sessions[name].get(f"{farm.url}/", headers={"Accept": "text/html"}, timeout=30).text
        card = page[page.index(f'id="job-{job}"'):]
        card = card[:card.index('<div class="job"') if '<div class="job"' in card else len(card)]
        assert "user bob</span>" in card and "priority 7</span>" in card, name
        assert 'why: <span class="error">povray failed: &lt;img src=x&gt; \\x1b[31mparse error</span>' in card, name
        assert "second line" not in card and "<img src=x>" not in card
    farm.client.delete(job)


# --- writes: the owner's and the admins'; a refused one changes nothing --------------------------------------
#: action -> (state the job is in first, method, path, form, what it is)
WRITES = {
    "cancel": ("queued", "POST", "/api/jobs/{job}/cancel", {}),
    "pause": ("queued", "POST", "/api/jobs/{job}/pause", {}),
    "resume": ("paused", "POST", "/api/jobs/{job}/resume", {}),
    "retry": ("cancelled", "POST", "/api/jobs/{job}/retry", {}),
    "retry frames": ("done", "POST", "/api/jobs/{job}/retry", {"frames": "1"}),
    "priority": ("queued", "POST", "/api/jobs/{job}/priority", {"priority": "7"}),  # 9: admins only (limits)
    "delete": ("cancelled", "DELETE", "/api/jobs/{job}", {}),
    # the page's delete and cancel act only with their confirmation (tests/store/test_web_confirm.py)
    "delete (page)": ("cancelled", "POST", "/jobs/{job}/delete", {"confirm": "{job}"}),
    "cancel (page)": ("queued", "POST", "/jobs/{job}/cancel", {"confirm": "{job}"}),
}


@pytest.mark.parametrize("whose", OWNERS)
@pytest.mark.parametrize("what", WRITES)
@pytest.mark.parametrize("name", ROLES)
def test_writes(farm, name, what, whose):
    state, method, path, form = WRITES[what]
    job = farm.job(OWNERS[whose], state)
    before = farm.record(job)
    page = "(page)" in what
    answer = farm.sessions[name].request(method, farm.url + path.format(job=job), timeout=30,
                                         data={field: value.format(job=job) for field, value in form.items()},
                                         allow_redirects=False, headers={"Accept": "text/html"} if page else {})
    allowed = ROLES[name] == "admin" or (ROLES[name] == "user" and whose == "own")
    if not allowed:
        assert answer.status_code == 403, (name, what, whose, answer.text[:300])
        assert farm.record(job) == before  # nothing changed: state, priority, everything in its record
        kind = "delete" if what.startswith("delete") else "control"
        said = f"{name} ({ROLES[name]}) may not {kind} job {job} (owned by {OWNERS[whose]})"
        assert said in (answer.text if page else answer.json()["error"])
        return
    assert answer.status_code == (302 if page else 200), (name, what, whose, answer.text[:300])
    after = {k.decode(): v.decode() for k, v in farm.record(job).items()}
    if what.startswith("delete"):
        assert not after
    elif what == "priority":
        assert after["priority"] == "7"
    else:
        expected = {"cancel": "cancelled", "pause": "paused", "resume": "queued", "retry": "queued",
                    "retry frames": "running", "cancel (page)": "cancelled"}[what]
        assert after["state"] in (expected, "running"), after  # resumed and retried jobs may be either


# --- submit: owned by the signed-in account; only an admin may name another owner ----------------------------
def _submit(farm: Farm, name: str, **form: str) -> requests.Response:
    from httpov.archive import ArchiveLimits, pack_scene

    scene = farm.tmp / "scene.zip"
    if not scene.exists():
        pack_scene(farm.scene, scene, ArchiveLimits())
    return farm.sessions[name].post(f"{farm.url}/api/jobs", data={"count": "1", **form}, timeout=60,
                                    files={"scene": ("scene.zip", scene.read_bytes(), "application/zip")})


def test_a_web_submit_is_owned_by_the_signed_in_account_and_an_admin_may_submit_for_another(farm):
    before = set(farm.client.store.job_ids())
    mine = _submit(farm, "uma")
    assert mine.status_code == 201, mine.text
    view = farm.sessions["uma"].get(f"{farm.url}/api/jobs/{mine.json()['id']}", timeout=30).json()
    assert (view["user"], view["submitted_by"], view["submitted_by_operator"]) == ("uma", "uma", False)
    assert _submit(farm, "uma", user="uma").status_code == 201  # naming oneself is fine

    refused = _submit(farm, "uma", user="bob")
    assert refused.status_code == 403 and "uma (user) may not submit a job for bob" in refused.json()["error"]
    viewer = _submit(farm, "vic")
    assert viewer.status_code == 403 and "vic (viewer) may not submit" in viewer.json()["error"]
    assert len(set(farm.client.store.job_ids()) - before) == 2  # nothing queued for the refused ones

    for_bob = _submit(farm, "ada", user="bob")
    assert for_bob.status_code == 201, for_bob.text
    job = for_bob.json()["id"]
    view = farm.sessions["ada"].get(f"{farm.url}/api/jobs/{job}", timeout=30).json()
    assert (view["user"], view["submitted_by"], view["submitted_by_operator"]) == ("bob", "ada", False)
    page = farm.sessions["ada"].get(f"{farm.url}/jobs/{job}", headers={"Accept": "text/html"}, timeout=30).text
    assert 'id="owner">bob<' in page and 'id="submitted-by">ada (admin)<' in page
    # the viewer's pages offer no submit, and its form is refused
    assert farm.sessions["vic"].get(f"{farm.url}/submit", headers={"Accept": "text/html"}).status_code == 403
    assert 'href="/submit"' not in farm.sessions["vic"].get(f"{farm.url}/", headers={"Accept": "text/html"}).text


def test_an_accounts_token_acts_with_its_accounts_role(farm):
    from httpov.web.tokens import Tokens

    token, _ = Tokens(farm.client.store.r, farm.settings.prefix).create("uma", "script")
    bearer = {"Authorization": f"Bearer {token}"}
    own, others = farm.job("uma"), farm.job("bob")
    before = farm.record(others)
    refused = requests.post(f"{farm.url}/api/jobs/{others}/cancel", headers=bearer, timeout=30)
    assert refused.status_code == 403 and "uma (user) may not control" in refused.json()["error"]
    assert farm.record(others) == before
    assert requests.post(f"{farm.url}/api/jobs/{own}/cancel", headers=bearer, timeout=30).status_code == 200
    assert farm.client.store.state(own) == "cancelled"
    picture = f"{farm.url}/jobs/{farm.rendered['bob']}/frames/1.png"
    assert requests.get(picture, headers=bearer, timeout=30).status_code == 403


def test_a_farm_wide_token_acts_as_an_admin_and_nodes_are_seen_by_every_role(farm):
    job = farm.job("bob")
    bearer = {"Authorization": f"Bearer {farm.token}"}
    assert requests.post(f"{farm.url}/api/jobs/{job}/pause", headers=bearer, timeout=30).status_code == 200
    assert farm.client.store.state(job) == "paused"
    for name in ROLES:
        assert farm.sessions[name].get(f"{farm.url}/api/nodes", timeout=30).status_code == 200
        assert farm.sessions[name].get(f"{farm.url}/nodes", headers={"Accept": "text/html"}).status_code == 200


# --- accounts: the migration at the first start, and a role change ending sessions -------------------------
def test_an_accounts_file_from_before_roles_was_given_them_at_the_first_start(farm):
    from httpov.web.auth import load_accounts

    lines = [line for line in farm.log.read_text().splitlines() if "given roles" in line]
    assert len(lines) == 1 and "its only account ada is admin" in lines[0], lines
    assert {name: account.role for name, account in load_accounts(farm.accounts).items()} == \
        {"ada": "admin", "uma": "user", "vic": "viewer", "bob": "user"}
    assert re.search(r"^ada:admin:\$argon2id\$", farm.accounts.read_text(), re.M)
    assert farm.accounts.stat().st_mode & 0o777 == 0o600


def test_a_role_change_or_removal_ends_the_accounts_sessions_at_once(farm):
    from httpov.web.auth import add_user

    add_user(farm.accounts, "rita", PASSWORD, "user")
    browser = farm.sign_in("rita")
    assert browser.get(f"{farm.url}/api/jobs", timeout=30).status_code == 200
    result = CliRunner().invoke(cli, ["web-user", "role", "rita", "viewer", "--accounts", str(farm.accounts)])
    assert result.exit_code == 0 and "rita: user -> viewer" in result.output, result.output
    assert browser.get(f"{farm.url}/api/jobs", timeout=30).status_code == 401  # the old session is gone
    browser = farm.sign_in("rita")  # signed in again: a viewer now
    assert _submit_as(farm, browser).status_code == 403
    result = CliRunner().invoke(cli, ["web-user", "remove", "rita", "--accounts", str(farm.accounts)])
    assert result.exit_code == 0, result.output
    assert browser.get(f"{farm.url}/api/jobs", timeout=30).status_code == 401


def _submit_as(farm: Farm, browser: requests.Session) -> requests.Response:
    return browser.post(f"{farm.url}/api/jobs", data={}, timeout=30)


# --- the CLI with direct Redis access: the local operator, an admin ----------------------------------------
def test_the_cli_with_direct_redis_access_acts_as_an_admin_and_readme_says_so(farm):
    env = worker_env(farm.settings)
    runner = CliRunner()
    job = farm.job("bob")
    result = runner.invoke(cli, ["pause", job], env=env)  # bob's job: the operator may
    assert result.exit_code == 0 and farm.client.store.state(job) == "paused", result.output
    result = runner.invoke(cli, ["submit", str(farm.scene), "--user", "bob", "--count", "1"], env=env)
    assert result.exit_code == 0, result.output
    made = result.output.split()[1].rstrip(":")
    shown = json.loads(runner.invoke(cli, ["status", made, "--json"], env=env).output)
    assert shown["user"] == "bob" and shown["submitted_by_operator"] is True and shown["submitted_by"]
    table = runner.invoke(cli, ["status"], env=env).output
    assert "OWNER" in table.splitlines()[0] and re.search(rf"^{made}\s+\S+\s+bob\s", table, re.M), table
    # the same Client, asked as a user of the web, refuses: the one place authorization is decided
    with pytest.raises(ForbiddenError, match=f"uma \\(user\\) may not download job {made}"):
        farm.client.logs(made, who=Identity("uma", Role.USER))
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "direct Redis access is admin-level" in readme


def test_only_an_admin_drains_a_render_node_and_every_role_reads_the_backlog(farm):
    """The Drain button (admins only) asks first and marks the node; the API refuses users and viewers (nothing
    marked). GET /api/backlog, what KEDA scales render nodes on, counts each new job's batches for every role."""
    node = f"drn{secrets.token_hex(2)}@host"
    farm.client.store.heartbeat(node, 2, [], {"host": "host"})
    drainable = f'data-dialog="confirm-drain-{node}"'
    for name in ("uma", "vic"):
        assert drainable not in farm.sessions[name].get(f"{farm.url}/nodes", headers={"Accept": "text/html"}).text
        refused = farm.sessions[name].post(f"{farm.url}/api/nodes/{node}/drain", timeout=30)
        assert refused.status_code == 403 and f"{name} ({ROLES[name]}) may not admin" in refused.json()["error"]
        assert farm.sessions[name].get(f"{farm.url}/nodes/{node}/confirm-drain").status_code == 403
    assert node not in farm.client.store.draining()

    ada = farm.sessions["ada"]
    page = ada.get(f"{farm.url}/nodes", headers={"Accept": "text/html"}).text
    assert drainable in page and f'<dialog class="confirm" id="confirm-drain-{node}"' in page
    assert f"Drain render node {node}?" in ada.get(f"{farm.url}/nodes/{node}/confirm-drain", timeout=30).text
    unconfirmed = ada.post(f"{farm.url}/nodes/{node}/drain", data={}, allow_redirects=False, timeout=30)
    assert unconfirmed.status_code == 400 and node not in farm.client.store.draining()
    assert ada.post(f"{farm.url}/api/nodes/nosuch/drain", timeout=30).status_code == 404
    done = ada.post(f"{farm.url}/nodes/{node}/drain", data={"confirm": node}, allow_redirects=False, timeout=30)
    assert done.status_code == 302 and node in farm.client.store.draining()
    states = {n["node"]: n["state"] for n in ada.get(f"{farm.url}/api/nodes", timeout=30).json()}
    assert states[node] == "draining"
    remote = CliRunner().invoke(cli, ["--server", farm.url, "nodes", "drain", node.split("@")[0]],
                                env={"HTTPOV_TOKEN": farm.token})  # the CLI through the API (an admin's token)
    assert remote.exit_code == 0 and f"node {node} is draining" in remote.output, remote.output

    before = {name: farm.sessions[name].get(f"{farm.url}/api/backlog", timeout=30).json() for name in ROLES}
    farm.job("bob")
    for name in ROLES:
        now = farm.sessions[name].get(f"{farm.url}/api/backlog", timeout=30).json()
        assert now["default"]["work"] == before[name]["default"]["work"] + 1 and now["pools"] == {}
