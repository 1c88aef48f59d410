"""The JSON API that the pages and scripts share: each endpoint is the library call the CLI command makes."""
from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, send_file, session, url_for

from httpov.access import Action, Identity, Role, allowed, require
from httpov.audit import DEFAULT_LIMIT, MAX_LIMIT, Record, recording
from httpov.errors import BadInputError, FieldError, ForbiddenError, SceneError
from httpov.events import DEFAULT_LIMIT as EVENTS_LIMIT
from httpov.events import MAX_LIMIT as EVENTS_MAX
from httpov.events import check_id
from httpov.options import OptionError, SubmitOptions, parse_priority
from httpov.plan import parse_frame_range, safe_name
from httpov.preview import ScenePreview
from httpov.text import shown
from httpov.web.server import WATCH_KEY
from httpov.web.source import job_id
from httpov.web.stream import REFUSED, job_events, run, waiter
from httpov.web.tokens import bearer

api = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("httpov.web")

CONTROLS = ("cancel", "pause", "resume", "retry")
#: Submit's options a form or a script may send, as text (SubmitOptions' names, as the CLI's flags without the
#: dashes); the scene zip comes in the field `scene`. The field `user` (the job's owner) is the signed-in account's
#: (or the token's account's) own name unless an admin names another.
SUBMIT_FIELDS = ("name", "frames", "width", "height", "count", "slices", "priority", "radiosity_cache", "photons",
                 "slice_rows", "time_limit", "max_processes", "max_nodes", "pool", "any_povray", "strict", "notify",
                 "after", "after_frames", "after_anyway")
#: How a form or script says yes to a flag (any_povray, strict, after_anyway).
YES = ("1", "true", "yes", "on")
#: Who a reader of a `--public-read` page is, signed in as nobody: a viewer no account can be (not a name).
PUBLIC = Identity("(public)", Role.VIEWER)


def web() -> Any:
    return current_app.extensions["httpov"]


def who() -> Identity:
    """The identity this request acts as (set by the app's check on each request): a signed-in account with its
    role, a bearer token's, or PUBLIC."""
    return g.get("identity") or PUBLIC


#: The limits' name for `who` (the same identity).
identity = who


def wants_json() -> bool:
    """API calls, images and scripts get JSON errors; a browser asking for a page gets a page."""
    path = request.path
    return (path.startswith("/api/") or path.endswith(".png") or path.endswith(".zip") or path.endswith(".mp4")
            or "text/html" not in request.headers.get("Accept", ""))


def _form_options(upload: Any, form: Mapping[str, str]) -> SubmitOptions:
    """The submit options of form fields, and the upload there: FieldError naming each field in the wrong."""
    client = web().client
    given: dict[str, object] = {field: form[field] for field in SUBMIT_FIELDS if form.get(field)}  # empty: not given
    for flag in ("any_povray", "strict", "after_anyway"):
        if flag in given:
            given[flag] = str(given[flag]).strip().lower() in YES
    # the job is the signed-in account's or the token's account's (a farm-wide token's: `token`'s); an admin may
    # name another owner (Client.submit refuses anyone else)
    given["user"] = form.get("user") or who().name
    errors: dict[str, str] = {}
    try:
        options = SubmitOptions.parse(given, client.settings)
    except OptionError as exc:  # said with the form's field names
        errors = dict(exc.errors)
    if upload is None or not upload.filename:
        errors["scene"] = "choose a scene zip (the field `scene`)"
    if errors:
        raise FieldError(errors)
    return options


def check_upload(upload: Any, form: Mapping[str, str]) -> ScenePreview:
    """What submitting the uploaded scene zip with the form's options would render (httpov.preview), nothing stored
    or queued; FieldError names the field."""
    from httpov.preview import preview

    require(who(), Action.SUBMIT)
    options = _form_options(upload, form)
    with tempfile.TemporaryDirectory(prefix="httpov-upload-") as tmp:
        path = Path(tmp) / "scene.zip"  # never the uploaded name: that is data, not a path
        upload.save(path)
        try:
            client = web().client
            return preview(path, options, client.settings, client.job_processes(options))
        except SceneError as exc:
            raise FieldError({"scene": as_sent(str(exc), path, upload.filename)}) from None
        except OptionError as exc:
            raise FieldError({field: as_sent(text, path, upload.filename)
                              for field, text in exc.errors.items()}) from None
        except BadInputError as exc:
            raise FieldError({"scene": as_sent(str(exc), path, upload.filename)}) from None


def submit_upload(upload: Any, form: Mapping[str, str]) -> Any:
    """Client.submit of an uploaded scene zip with the CLI's options from form fields; FieldError names the field."""
    require(who(), Action.SUBMIT)  # a viewer: 403 before the upload is looked at
    client = web().client
    options = _form_options(upload, form)
    if options.name is None:  # the upload's file name, as the CLI names a job after its scene, made safe
        options = replace(options, name=safe_name(PurePosixPath(upload.filename.replace("\\", "/")).stem))
    with tempfile.TemporaryDirectory(prefix="httpov-upload-") as tmp:
        path = Path(tmp) / "scene.zip"  # never the uploaded name: that is data, not a path
        upload.save(path)
        try:
            return client.submit(path, options, scene_file=form.get("scene_file") or None, who=who())
        except SceneError as exc:  # ArchiveError too: the zip is the problem
            raise FieldError({"scene": as_sent(str(exc), path, upload.filename)}) from None
        except OptionError as exc:  # what only the scene decides (slices past its height): said beside its field
            raise FieldError({field: as_sent(text, path, upload.filename)
                              for field, text in exc.errors.items()}) from None
        except BadInputError as exc:  # the scene's own values (its size past HTTPOV_MAX_WIDTH)
            raise FieldError({"scene": as_sent(str(exc), path, upload.filename)}) from None


def submit_choices() -> dict[str, Any]:
    """What the submit form offers in its lists: the priorities this account may give a job (up to its max priority:
    httpov.user_limits; every one for an admin), the radiosity cache's and the photons' modes, the live render
    pools, and the longest time limit (HTTPOV_TASK_TIME_LIMIT)."""
    from httpov.photons import PHOTON_MODES
    from httpov.plan import RADIOSITY_MODES

    client, identity = web().client, who()
    top = 9 if identity.admin else client.user_limits_of(identity.name).max_priority
    return {"priorities": list(range(0, top + 1)), "radiosity_modes": RADIOSITY_MODES,
            "photon_modes": PHOTON_MODES,
            "pools": sorted(client.store.live_pools(within=client.settings.live_node_seconds)),
            "max_time_limit": client.settings.task_time_limit}


def priority_refused(form: Mapping[str, str]) -> str | None:
    """Why the form's priority is past what its owner may give (httpov.user_limits' max priority), to be said beside
    the field before the upload is looked at; None when it is not (or is no number: SubmitOptions says that)."""
    from httpov import user_limits

    identity = who()
    owner = form.get("user") or identity.name
    if identity.admin or owner != identity.name or not (form.get("priority") or "").strip():
        return None  # an admin may; naming another owner is refused (403) by Client.submit itself
    try:
        priority = parse_priority(form["priority"])
    except OptionError:
        return None
    try:
        user_limits.check_priority(web().client.user_limits_of(owner), priority, owner, identity)
    except ForbiddenError as exc:
        return str(exc)
    return None


#: The server's temporary folder and anything under it, as an error message may name them.
_TEMPORARY = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s:'\"]*")


def as_sent(message: str, saved: Path, filename: str) -> str:
    """An error about the upload saved at `saved`, naming instead the file the user sent (its last part, shown
    safely, at most 100 characters); any other path of the server's temporary folder is left out."""
    name = shown(PurePosixPath(filename.replace("\\", "/")).name[:100]) or "the upload"
    return _TEMPORARY.sub("(a temporary file)", message.replace(str(saved), name))


def control(action: str, job: str, frames: str | None = None) -> dict[str, Any]:
    """The CLI's cancel/pause/resume/retry on one job; answers what was done. `frames` ('5-9' or '7') retries those
    frames, done or not, as `httpov retry JOB --frames 5-9` does."""
    client = web().client
    job = job_id(job)
    if action not in CONTROLS:
        raise BadInputError(f"{action!r} is not one of {', '.join(CONTROLS)}")
    if frames:
        if action != "retry":
            raise FieldError({"frames": f"only retry takes frames, not {action}"})
        span = parse_frame_range(frames)  # OptionError, a FieldError: 'frames 'x': give a frame (7) or a range (5-9)'
        result = client.retry(job, frames=span, who=who())
    else:
        result = getattr(client, action)(job, who=who())
    answer: dict[str, Any] = {"id": job, "action": action, "state": client.store.state(job)}
    if isinstance(result, int):
        answer["batches_queued"] = result
    return answer


def delete(job: str, force: bool = False) -> dict[str, Any]:
    """`httpov delete JOB`'s library call: a live job is refused (409), as the CLI refuses it without --force."""
    deleted = web().client.delete(job_id(job), force=force, who=who())
    return {"id": deleted.job_id, "action": "delete", "objects": deleted.objects, "redis_keys": deleted.redis_keys,
            "scene_deleted": deleted.scene_deleted, "state": deleted.state, "name": deleted.name,
            "finished": deleted.finished}


def nodes() -> Any:
    """`httpov nodes --json`'s library call."""
    from httpov.nodes import farm_nodes

    require(who(), Action.NODES)
    client = web().client
    return farm_nodes(client.store, client.settings.lease_seconds)


def set_priority(job: str, raw: str | None) -> dict[str, Any]:
    """`httpov priority JOB N`'s library call."""
    priority = parse_priority(raw or "")
    moved = web().client.set_priority(job_id(job), priority, who=who())
    return {"id": job, "action": "priority", "priority": priority, "batches_moved": moved}


def requester() -> Identity | None:
    """Who the request acts as when someone signed in or sent a token (its identity, with the account's role);
    None for nobody (a --public-read reader)."""
    return who() if g.get("user") is not None else None


def _signed_in() -> Identity:
    who = requester()
    if who is None:
        raise ForbiddenError("sign in first: API tokens belong to an account")
    return who


def account_tokens() -> list[Any]:
    """The requester's own tokens; an admin's list has everyone's."""
    who = _signed_in()
    return web().tokens.list(None if allowed(who, Action.ADMIN) else who.name)


def create_token(label: str | None, account: str | None = None) -> tuple[str, Any]:
    """A new token for the requester's account (an admin may name another `account`): (the token, shown once; its
    row). The account must be in the accounts file: a farm-wide token, an admin of no account, names one."""
    who = _signed_in()
    account = (account or "").strip() or who.name
    with recording(web().client.audit, who, "token.add", detail=f"for {account}") as entry:
        if account != who.name and not allowed(who, Action.ADMIN):
            raise ForbiddenError(f"{shown(who.name)} may not make a token for {shown(account)}: only for themselves",
                                 hint="an admin can make anyone's (`httpov web-token add NAME`)")
        if account not in web().gate.accounts():
            raise FieldError({"account": f"{account!r} is not an account of this server: tokens belong to accounts"})
        try:
            token, made = web().tokens.create(account, label)
        except BadInputError as exc:
            raise FieldError({"label": str(exc)}) from None
        entry.done = made.described
    log.info("%s made API token %s for %s", shown(who.name), made.id, shown(account))
    return token, made


def revocable(token_id: str) -> Any:
    """The token `token_id`, once the requester may revoke it: their own, or anyone's for an admin (ForbiddenError
    otherwise)."""
    who = _signed_in()
    found = web().tokens.find(token_id)
    _may_revoke(who, found)
    return found


def _may_revoke(who: Identity, found: Any) -> None:
    if found.account != who.name and not allowed(who, Action.ADMIN):
        raise ForbiddenError(f"{shown(who.name)} may not revoke token {found.id}: it is another account's",
                             hint="revoke your own tokens; an admin can revoke anyone's")


def revoke_token(token_id: str) -> Any:
    """Revoke the requester's own token `token_id`; an admin may revoke anyone's (ForbiddenError: nothing revoked)."""
    who = _signed_in()
    with recording(web().client.audit, who, "token.remove", detail=f"token {token_id}") as entry:
        found = web().tokens.find(token_id)
        entry.detail = found.described
        _may_revoke(who, found)
        web().tokens.revoke(found)
    log.info("%s revoked API token %s of %s", shown(who.name), found.id, shown(found.account))
    return found


def audit_records(args: Mapping[str, str]) -> list[Record]:
    """`httpov audit`'s library call, for admins only (ForbiddenError: 403): the records of the filters `user`, `job`,
    `since` (an age: 30d, 12h, 90m) and `limit`, oldest first."""
    from httpov.retention import parse_age

    require(_signed_in(), Action.ADMIN)
    errors: dict[str, str] = {}
    since = limit = None
    try:
        since = parse_age(args["since"]) if args.get("since") else None
    except BadInputError:
        errors["since"] = f"{args['since'][:40]!r}: give an age such as 30d, 12h or 90m"
    try:
        limit = int(args.get("limit") or DEFAULT_LIMIT)
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors["limit"] = f"{(args.get('limit') or '')[:40]!r}: give a number of records, 1 to {MAX_LIMIT}"
    if errors:
        raise FieldError(errors)
    return web().client.audit.records(user=args.get("user") or None, job=args.get("job") or None, since=since,
                                      limit=limit or DEFAULT_LIMIT)


def _list_args() -> tuple[list[str] | None, int | None, int]:
    """GET /api/jobs's `state` (several, comma-separated), `limit` and `skip`; FieldError names a wrong one."""
    states = [s.strip() for s in (request.args.get("state") or "").split(",") if s.strip()] or None
    limit = request.args.get("limit") or None
    if limit is not None and (not limit.isdigit() or int(limit) < 1):
        raise FieldError({"limit": f"must be a whole number of at least 1, got {limit[:20]!r}"})
    skip = request.args.get("skip") or "0"
    if not skip.isdigit() or len(skip) > 9:
        raise FieldError({"skip": f"must be a whole number, got {skip[:20]!r}"})
    return states, int(limit) if limit else None, int(skip)


@api.get("/jobs")
def list_jobs():
    """`httpov status --json`: every job (or the newest `limit`, after the newest `skip`: a page of the jobs page),
    oldest first; `state` may list several states, comma-separated, `name` is a shell-style pattern. X-Httpov-Jobs
    says how many jobs the farm lists in all."""
    client = web().client
    states, limit, skip = _list_args()
    views = client.views(states, request.args.get("name") or None, request.args.get("user") or None,
                         limit, who=who(), skip=skip)
    response = jsonify([view.to_json() for view in views])
    response.headers["X-Httpov-Jobs"] = str(client.job_count(who=who()))
    return response


@api.get("/jobs/<job>")
def show_job(job: str):
    return jsonify(web().source.job(job, who=who()).to_json())


@api.get("/jobs/<job>/timeline")
def job_timeline(job: str):
    """The job page's timeline (httpov.web.charts.job_timeline) as geometry, null before any batch started: the
    live page draws it again as batches end; for whoever may see the job's progress."""
    chart = web().source.job_with_timeline(job, who=who())[1]
    return jsonify(None if chart is None else chart.to_json())


def still_signed_in() -> Any:
    """A check, for a stream to ask again later, that its asker is still signed in: their session is still in Redis
    (not signed out or expired, the account's password and role unchanged), or their token is not revoked."""
    w, name = web(), g.get("user")
    if name is None:
        return lambda: True  # a --public-read reader: nobody to sign out
    header = request.headers.get("Authorization") or ""
    if g.get("farm_token"):
        return lambda: w.gate.token_ok(header)
    if g.get("bearer"):
        token = bearer(header)
        return lambda: w.tokens.account(token, w.gate.accounts()) == name
    sid = session.get("sid")
    return lambda: w.sessions.user(sid, w.gate.accounts()) == name


def live(feed: Any, name: str) -> Any:
    """A text/event-stream of `feed`'s news as events `name` (httpov.web.stream.run), once the server has a stream to
    spare for this account (else 429: the page polls). The stream's place is given back when it ends."""
    w, account = web(), who().name
    refused = w.streams.take(account)
    if refused is not None:
        return jsonify({"error": refused}), REFUSED, {"Retry-After": str(w.refresh)}
    watch = request.environ.get(WATCH_KEY)  # cheroot's: the connection's socket, to see the client leave
    events = run(feed.news, still_signed_in(), name, w.stream_timing, waiter(getattr(watch, "sock", None)))
    response = Response(events, mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front sends each event as it comes
    response.call_on_close(lambda: w.streams.give(account))
    return response


@api.get("/stream/jobs")
def stream_jobs():
    """The events `jobs` of GET /api/jobs's JSON (same `state`, `user`, `limit`, `skip`), each time it changes."""
    from httpov.web.live import jobs_feed

    states, limit, skip = _list_args()
    feed = jobs_feed(web().client, who(), states, request.args.get("user") or None, limit, skip, web().refresh)
    return live(feed, "jobs")


@api.get("/stream/jobs/<job>")
def stream_job(job: str):
    """The events `job` of GET /api/jobs/ID's JSON, each time it changes, for whoever may see the job."""
    from httpov.web.live import job_feed

    return live(job_feed(web().source, job_id(job), who(), web().refresh), "job")


@api.get("/jobs/<job>/frames")
def list_frames(job: str):
    """The rendered frame numbers, in order; `page=N` those of the job page's page N only (its live grid)."""
    source = web().source
    if request.args.get("page"):
        frame_page = source.frame_page(job, request.args.get("page"), who=who())
        return jsonify(sorted(frame_page.rendered))
    return jsonify(source.frames(job, who=who()))


@api.get("/jobs/<job>/frames/<int:frame>")
def frame_detail(job: str, frame: int):
    """What the frame viewer shows of one frame (its page's data, for static/viewer.js's in-page navigation)."""
    detail = web().source.frame_detail(job, frame, who=who())
    return jsonify({**detail.to_json(), "png": url_for("pages.frame", job=detail.job, frame=frame),
                    "page": url_for("pages.frame_view", job=detail.job, frame=frame)})


@api.get("/jobs/<job>/results.zip")
def download_results(job: str):
    """`httpov fetch JOB --output DIR`'s download: the frames at the top of one zip (stored, PNGs are compressed
    already) and the batch logs under logs/, built as the pages' downloads are (Client.fetch, every result checked;
    once per job state, off the request thread: 202 with Retry-After while it is being built)."""
    from httpov.client import authorize

    job = job_id(job)
    authorize(web().client.store, who(), Action.DOWNLOAD, job)  # before anything else is said of it
    return serve_download(job, "results.zip")


def serve_download(job: str, what: str) -> Any:
    """A job's download (httpov.web.downloads), sent from storage once it is built; while it is being built, 202 with
    Retry-After (503 when the builders' queue is full), as a page that reloads itself for a browser following a
    link (it asks for text/html), else as JSON. The caller has checked that the requester may download the job."""
    from httpov.errors import ServerBusyError

    downloads = web().downloads
    assert downloads is not None
    try:
        ready = downloads.get(job, what, who())
    except ServerBusyError as exc:
        return _building(job, what, str(exc), 503)
    stream = downloads.open(ready) if ready is not None else None
    if ready is None or stream is None:
        return _building(job, what, f"{what} of job {job} is being built", 202)
    return send_file(stream, mimetype=ready.mimetype, as_attachment=True, download_name=ready.name)


def _building(job: str, what: str, message: str, code: int) -> tuple[Any, int, dict[str, str]]:
    from flask import render_template

    retry_after = web().refresh
    headers = {"Retry-After": str(retry_after)}
    if "text/html" not in request.headers.get("Accept", ""):
        return jsonify({"building": what, "job": job, "message": message, "retry_after": retry_after}), code, headers
    return render_template("building.html", job=job, what=what, message=message, retry_after=retry_after), code, \
        headers


@api.post("/jobs")
def submit_job():
    submission = submit_upload(request.files.get("scene"), request.form)
    spec = submission.spec
    return jsonify({"id": spec.id, "name": spec.name, "batches": len(spec.batches), "ignored": submission.ignored,
                    "notes": submission.notes, "warnings": submission.warnings, "uploaded": submission.uploaded,
                    "description": submission.describe(), "spec": spec.to_dict()}), 201


@api.post("/jobs/<job>/priority")
def priority_job(job: str):
    return jsonify(set_priority(job, request.form.get("priority")))


@api.post("/jobs/<job>/<action>")
def control_job(job: str, action: str):
    return jsonify(control(action, job, request.form.get("frames") or None))


@api.delete("/jobs/<job>")
def delete_job(job: str):
    return jsonify(delete(job, force=(request.args.get("force") or "").lower() in YES))


@api.get("/nodes")
def list_nodes():
    return jsonify(nodes())


@api.get("/backlog")
def backlog():
    """The batches waiting for a render node (httpov.view.backlog): what KEDA's metrics-api scaler reads
    (docker/k8s/scaledobject.yaml)."""
    from httpov.view import backlog as farm_backlog

    require(who(), Action.NODES)
    return jsonify(farm_backlog(web().client.store))


@api.post("/nodes/<node>/drain")
def drain_node(node: str):
    """Tell a render node to drain (admins): it takes no new batch, finishes those it renders and exits."""
    return jsonify({"node": web().client.drain_node(node, who=identity()), "draining": True})


@api.get("/tokens")
def list_tokens():
    return jsonify([t.to_json() for t in account_tokens()])


@api.post("/tokens")
def create_api_token():
    token, made = create_token(request.form.get("label"), request.form.get("account"))
    return jsonify({"token": token, **made.to_json()}), 201


@api.delete("/tokens/<token_id>")
def revoke_api_token(token_id: str):
    return jsonify({**revoke_token(token_id).to_json(), "action": "revoke"})


#: The limits an admin may set (httpov.user_limits.UserLimits), and how their text is read from a form.
LIMIT_FIELDS = {"max_processes": int, "max_jobs": int, "max_priority": int, "weight": float}


@api.get("/limits")
def list_limits():
    return jsonify(web().client.list_limits(who=identity()))


@api.put("/limits/<name>")
def set_limits(name: str):
    """Set some of a user's (or `*`'s) limits from a JSON object or form fields (admins); answers the entry."""
    body = request.get_json(silent=True)
    given = body if isinstance(body, dict) else request.form.to_dict()
    unknown = sorted(set(given) - set(LIMIT_FIELDS))
    if unknown:
        raise FieldError({unknown[0]: f"no such limit (the limits: {', '.join(LIMIT_FIELDS)})"})
    values: dict[str, int | float | None] = {}
    for field, kind in LIMIT_FIELDS.items():
        value = given.get(field)
        if isinstance(value, str):
            try:
                value = kind(value) if value.strip() else None
            except ValueError:
                raise FieldError({field: f"{field} must be a number"}) from None
        values[field] = value
    try:
        entry = web().client.set_limits(name, who=identity(), **values)
    except BadInputError as exc:
        field = next((f for f in LIMIT_FIELDS if str(exc).startswith(f.replace("_", " "))), "name")
        raise FieldError({field: str(exc)}) from None
    return jsonify({"name": name, "limits": entry})


@api.delete("/limits/<name>")
def clear_limits(name: str):
    return jsonify({"name": name, "removed": web().client.clear_limits(name, who=identity())})


#: An event stream (GET /api/events as text/event-stream) ends after this many seconds or events, whichever comes
#: first: it holds one of the server's few threads (and one of its live streams: httpov.web.stream.Streams, as the
#: pages' do); the client (a browser's EventSource) resumes with Last-Event-ID. A keep-alive comment is sent after
#: each STREAM_WAIT seconds with no event.
STREAM_SECONDS, STREAM_EVENTS, STREAM_WAIT = 60.0, 1000, 15.0


@api.get("/events")
def events():
    """Job events the caller may see, oldest first: ?job=ID, ?after=ID, ?limit=N (a JSON list), or with Accept:
    text/event-stream a server-sent event stream of what comes after Last-Event-ID (or ?after=ID; else from now on),
    ending after STREAM_SECONDS or STREAM_EVENTS."""

    client, asker, job = web().client, who(), request.args.get("job") or None
    after = request.headers.get("Last-Event-ID") or request.args.get("after") or None
    try:
        after = check_id(after) if after is not None else None
    except BadInputError as exc:
        raise FieldError({"after": str(exc)}) from None
    if "text/event-stream" in request.headers.get("Accept", ""):
        w, account = web(), asker.name
        refused = w.streams.take(account)  # the same bound as the live pages' streams
        if refused is not None:
            return jsonify({"error": refused.replace("the page polls", "try again later")}), REFUSED, \
                {"Retry-After": str(w.refresh)}
        frames = job_events(client.follow_events(job, after, STREAM_WAIT, time.time() + STREAM_SECONDS, who=asker),
                     STREAM_EVENTS)
        response = Response(frames, mimetype="text/event-stream",
                            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        response.call_on_close(lambda: w.streams.give(account))  # ended, failed or its client gone
        return response
    limit = request.args.get("limit") or str(EVENTS_LIMIT)
    if not limit.isdigit() or not 1 <= int(limit) <= EVENTS_MAX:
        raise FieldError({"limit": f"must be a whole number from 1 to {EVENTS_MAX}, got {limit[:20]!r}"})
    return jsonify([e.to_json() for e in client.events(job, after, int(limit), who=asker)])


@api.get("/audit")
def audit():
    """The audit log, for admins: ?user=NAME&job=ID&since=7d&limit=N, oldest first."""
    return jsonify([r.to_json() for r in audit_records(request.args)])
