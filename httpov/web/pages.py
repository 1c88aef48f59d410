"""The pages: jobs, one job (frames, failures with povray's log, nodes, downloads), submit, login; frames and
thumbnails as images. Templates escape every value; the pages' script only ever sets text, never markup."""
from __future__ import annotations

import logging
import time

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from httpov.access import Action, allowed, require
from httpov.client import authorize
from httpov.errors import BadInputError, FieldError, JobStateError, PageNotFoundError, TokenNotFoundError
from httpov.states import JobState
from httpov.text import shown
from httpov.web.api import (
    CONTROLS,
    account_tokens,
    audit_records,
    check_upload,
    control,
    create_token,
    delete,
    priority_refused,
    requester,
    revocable,
    revoke_token,
    serve_download,
    set_priority,
    submit_choices,
    submit_upload,
    wants_json,
    web,
    who,
)
from httpov.web.charts import farm_use
from httpov.web.confirm import DESTRUCTIVE, check_confirmed, confirmation, node_confirmation, token_confirmation
from httpov.web.source import GRID_THUMB_SIZE, JOBS_PER_PAGE, job_id, page_number

pages = Blueprint("pages", __name__)
log = logging.getLogger("httpov.web")
THUMB_MAX_AGE = 365 * 86400  # seconds a browser keeps a frame's thumbnail asked for with its tag (?v=)
USE_HOURS = 6  # the nodes page's picture of the farm's use: its last hours (node-use keeps 6)
STATES = tuple(state.value for state in JobState if state not in (JobState.SUBMITTING, JobState.DELETING))


def png(data: bytes | None) -> Response:
    if data is None:
        return Response('{"error": "no frame of this job is rendered yet"}', 404, mimetype="application/json")
    return Response(data, mimetype="image/png")


@pages.get("/")
def jobs():
    state = request.args.get("state") or ""
    if state and state not in STATES:
        state = ""
    user = (request.args.get("user") or "").strip()[:64]
    number = page_number(request.args.get("page"), None, "the jobs")
    # one page, newest first: one more than a page is read to know whether an older page follows
    views = web().source.jobs(state or None, user or None, who=who(), skip=(number - 1) * JOBS_PER_PAGE,
                              limit=JOBS_PER_PAGE + 1)[::-1]
    if number > 1 and not views:
        raise PageNotFoundError(f"there is no page {number} of jobs{' ' + state if state else ''}")
    return render_template("jobs.html", jobs=views[:JOBS_PER_PAGE], state=state, states=STATES, user_filter=user,
                           page=number, older=len(views) > JOBS_PER_PAGE, per_page=JOBS_PER_PAGE)


@pages.get("/nodes")
def nodes():
    """The render nodes, as `httpov nodes` lists them."""
    from httpov.web.api import nodes as farm_nodes

    found, now = farm_nodes(), time.time()  # NODES: checked by farm_nodes
    use = farm_use(*web().client.store.node_use(now - USE_HOURS * 3600), now=now, hours=USE_HOURS)
    asking = requester()
    confirms = [node_confirmation(n) for n in found if n["state"] == "up"] \
        if asking is not None and allowed(asking, Action.ADMIN) else []  # the Drain buttons: admins'
    return render_template("nodes.html", nodes=found, now=now, use=use, confirms=confirms)


def _node(name: str) -> dict:
    from httpov.nodes import node_named
    from httpov.web.api import nodes as farm_nodes

    require(who(), Action.ADMIN)
    found = farm_nodes()
    wanted = node_named(found, name)
    return next(n for n in found if n["node"] == wanted)


@pages.get("/nodes/<node>/confirm-drain")
def confirm_drain(node: str):
    """Draining a render node asks first (a dialog on the nodes page; this page without script): admins only."""
    return render_template("confirm.html", c=node_confirmation(_node(node)),
                           post_url=url_for("pages.drain", node=node), back_url=url_for("pages.nodes"))


@pages.post("/nodes/<node>/drain")
def drain(node: str):
    check_confirmed("drain", node, request.form, what="node")  # 400 without it: nothing marked
    name = web().client.drain_node(node, who=who())
    flash(f"render node {name} is draining: it finishes the batches it renders, then exits")
    return redirect(url_for("pages.nodes"))


@pages.get("/jobs/<job>")
def job(job: str):
    source = web().source
    view, timeline = source.job_with_timeline(job, who=who())
    # another's job: its progress only, no pictures (DOWNLOAD is the owner's and the admins')
    pictures = allowed(who(), Action.DOWNLOAD, view.user)
    # the destructive buttons' confirmations, as dialogs (for whoever may act: the page offers no button otherwise)
    confirms = [confirmation(action, view) for action, needs in DESTRUCTIVE.items()
                if g.get("user") is not None and allowed(who(), needs, view.user)]
    # one page of the grid, in frame order (a bad ?page= is 400, one past the last 404, pictures or not)
    frames = source.frame_page(job, request.args.get("page"), who=who())
    return render_template("job.html", job=view, confirms=confirms, frames=frames, timeline=timeline,
                           failures=view.failure_groups(), video=pictures and _video_available(), pictures=pictures,
                           hangs=[(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h["at"])), h["what"])
                                  for h in view.hangs], warnings=[w["what"] for w in view.warnings])


@pages.get("/jobs/<job>/confirm/<action>")
def confirm_job(job: str, action: str):
    """The confirmation a destructive button (delete, cancel) asks first, as a page of its own: what the job's page
    shows in a dialog when its script runs, and what a browser without script (or a link) gets."""
    if action not in DESTRUCTIVE:
        abort(404)
    job = job_id(job)
    authorize(web().client.store, who(), DESTRUCTIVE[action], job)  # another's job: 403, nothing said of it
    return render_template("confirm.html", c=confirmation(action, web().source.job(job, who=who())),
                           post_url=url_for("pages.control_job", job=job, action=action),
                           back_url=url_for("pages.job", job=job))


@pages.post("/jobs/<job>/<action>")
def control_job(job: str, action: str):
    """The job page's buttons: the API's calls, then back to the page with what happened (or why not). Delete and
    cancel act only on a POST that carries their confirmation (400 otherwise: nothing done)."""
    if action in DESTRUCTIVE:
        authorize(web().client.store, who(), DESTRUCTIVE[action], job_id(job))
        check_confirmed(action, job_id(job), request.form)
    try:
        if action == "delete":
            delete(job)
            flash(f"job {job} deleted")
            return redirect(url_for("pages.jobs"))
        if action == "priority":
            done = set_priority(job, request.form.get("priority"))
            flash(f"job {job}: priority {done['priority']}")
        elif action in CONTROLS:
            done = control(action, job, request.form.get("frames") or None)
            flash(f"job {job}: {action} done, now {done['state']}")
        else:
            abort(404)
    except (JobStateError, BadInputError) as exc:  # said on the page the user came from (FieldError too)
        flash(str(exc), "error")
    return redirect(url_for("pages.job", job=job_id(job)))


@pages.route("/submit", methods=["GET", "POST"])
def submit():
    if g.get("user") is None:  # a --public-read reader: signing in comes first
        return redirect(url_for("pages.login", next=request.path))
    require(who(), Action.SUBMIT)  # a viewer: 403
    errors: dict[str, str] = {}
    if request.method == "POST":
        refused = priority_refused(request.form)  # past the account's max priority: beside the field, not a 403 page
        try:
            if refused:
                raise FieldError({"priority": refused})
            if request.form.get("check"):  # 'Check scene': what the ini asks for, nothing queued
                preview = check_upload(request.files.get("scene"), request.form)
                return render_template("submit.html", errors={}, form=request.form, preview=preview,
                                       **submit_choices())
            submission = submit_upload(request.files.get("scene"), request.form)
        except FieldError as exc:
            errors = exc.errors
        else:
            flash(f"job {submission.describe()}")
            return redirect(url_for("pages.job", job=submission.spec.id))
    return (render_template("submit.html", errors=errors, form=request.form, **submit_choices()),
            400 if errors else 200)


@pages.route("/tokens", methods=["GET", "POST"])
def tokens():
    """The signed-in account's API tokens (an admin's page lists everyone's): make one, shown on this page once, or
    revoke one."""
    from httpov.access import Action, allowed
    from httpov.web.tokens import when

    made, errors, code = None, {}, 200
    if request.method == "POST":
        try:
            made = create_token(request.form.get("label"), request.form.get("account"))
        except FieldError as exc:
            errors, code = exc.errors, 400
    who = requester()
    admin = who is not None and allowed(who, Action.ADMIN)
    listed = account_tokens()
    return render_template("tokens.html", tokens=listed, made=made, errors=errors, admin=admin, when=when,
                           form=request.form, confirms=[token_confirmation(t) for t in listed]), code


@pages.get("/tokens/<token_id>/confirm")
def confirm_revoke(token_id: str):
    """Revoking a token asks first, as deleting a job does (a dialog on the tokens page; this page without script):
    the requester's own token, or anyone's for an admin (403 otherwise)."""
    found = revocable(token_id)
    return render_template("confirm.html", c=token_confirmation(found),
                           post_url=url_for("pages.revoke", token_id=found.id), back_url=url_for("pages.tokens"))


@pages.post("/tokens/<token_id>/revoke")
def revoke(token_id: str):
    check_confirmed("revoke", token_id, request.form, what="token")  # 400 without it: nothing revoked
    try:
        found = revoke_token(token_id)
        flash(f"token {found.id} ({found.label or 'no label'}) of {found.account} revoked")
    except (BadInputError, TokenNotFoundError) as exc:
        flash(str(exc), "error")
    return redirect(url_for("pages.tokens"))


@pages.get("/audit")
def audit():
    """The audit log, for admins (403 for anyone else): who did what to which job, token or account, when, from where,
    done or refused; newest first, filtered as `httpov audit` filters it."""
    errors: dict[str, str] = {}
    try:
        records = audit_records(request.args)
    except FieldError as exc:
        records, errors = [], exc.errors
    return render_template("audit.html", records=list(reversed(records)), errors=errors, form=request.args,
                           when=lambda at: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))), \
        400 if errors else 200


@pages.app_context_processor
def audit_link() -> dict[str, bool]:
    """The Audit link is offered to admins only (the page asks httpov.access again)."""
    from flask import has_request_context

    from httpov.access import Action, allowed

    who = requester() if has_request_context() else None
    return {"audit_link": who is not None and allowed(who, Action.ADMIN)}


@pages.route("/login", methods=["GET", "POST"])
def login():
    gate = web().gate
    error = ""
    if request.method == "POST":
        name = request.form.get("user", "")
        address = request.remote_addr or "-"
        attempt = gate.limit.attempt(gate.limit.keys(name, address))
        if attempt.wait:  # refused before the password is looked at, right or wrong
            return _too_many(attempt.retry_after)
        account = gate.verify(name, request.form.get("password", ""))
        if account is not None and web().sessions is not None:
            gate.limit.succeeded(attempt)
            session.clear()
            session["sid"] = web().sessions.start(name, account)
            return redirect(_local(request.args.get("next")))
        # the name is data: repr() writes out quotes and control characters, so one line stays one line
        limit = gate.limit
        log.warning("failed sign-in as %s from %s (%d of %d in %g s%s)", shown(repr(name[:80])), shown(address),
                    attempt.failures, limit.attempts, limit.window,
                    "; the next ones are refused" if attempt.failures >= limit.attempts else "")
        error = "wrong user name or password"
    return render_template("login.html", error=error), 401 if error else 200


def _too_many(retry_after: int) -> tuple[Response | str, int, dict[str, str]]:
    """429 with when to try again: the sign-in page for a browser, JSON for a script."""
    at = time.strftime("%H:%M:%S", time.localtime(time.time() + retry_after))
    error = (f"too many failed sign-ins for this user or from this address: try again in {retry_after} s "
             f"(at {at})")
    headers = {"Retry-After": str(retry_after)}
    if wants_json():
        return jsonify({"error": error, "retry_after": retry_after}), 429, headers
    return render_template("login.html", error=error), 429, headers


@pages.post("/logout")
def logout():
    """Ends this session server-side: its cookie, copied and replayed, signs nobody in."""
    if web().sessions is not None:
        web().sessions.end(session.get("sid"))
    session.clear()
    return redirect(url_for("pages.login"))


def _local(target: str | None) -> str:
    """Only a path on this site, else the jobs page: a login link cannot send the user elsewhere. A path starts
    with one '/' and has no backslash, no control character and no space (browsers drop a tab or newline, so
    `/<tab>/evil.example` would be `//evil.example`: another host), and parses with no scheme and no host."""
    from urllib.parse import urlsplit

    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and target.isprintable() and " " not in target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("pages.jobs")


# images and downloads
@pages.get("/thumb/<job>.png")
def latest_thumbnail(job: str):
    return png(web().source.thumbnail(job, who=who()))


@pages.get("/jobs/<job>/thumbs/<int:frame>.png")
def frame_thumbnail(job: str, frame: int):
    """A frame's thumbnail in the grid, with its tag (the result it was read from) as ETag: a browser asking again
    with it gets 304, nothing read from storage. Asked for with its current tag (?v=, as the page links it), it is
    cached for good: a frame rendered again is a new result, a new tag, a new address."""
    found = web().source.tagged_thumbnail(job, frame, GRID_THUMB_SIZE, who=who(),
                                          known=[t.strip('"') for t in request.if_none_match.as_set()])
    if found is None:
        return png(None)
    tag, data = found
    response = Response(status=304) if data is None else png(data)
    if tag:
        response.set_etag(tag)
        response.headers["Cache-Control"] = (f"private, max-age={THUMB_MAX_AGE}, immutable"
                                             if request.args.get("v") == tag else "private, no-cache")
    return response


@pages.get("/jobs/<job>/frames/<int:frame>")
def frame_view(job: str, frame: int):
    """The frame viewer: frame N large (fit, or 1:1 with ?size=actual), previous/next links, the batch, node, render
    time and povray log lines of what rendered it (a sliced frame: which node rendered which rows), and a link to
    the full PNG. static/viewer.js adds the arrow keys, the fit/1:1 toggle in place and in-page navigation."""
    source = web().source
    detail = source.frame_detail(job, frame, who=who())  # another's job: 403, before anything is said of it
    return render_template("frame.html", job=source.job(job, who=who()), f=detail,
                           actual=request.args.get("size") == "actual")


@pages.get("/jobs/<job>/frames/<int:frame>.png")
def frame(job: str, frame: int):
    return png(web().source.frame_png(job, frame, who=who()))


@pages.get("/jobs/<job>/download/<what>")
def download(job: str, what: str):
    """All frames as one zip, a contact sheet or a video: built once per job state by the web server's builders
    (httpov.web.downloads: Client.fetch, each result checked, then media), never on this request's thread, and sent
    from storage; while it is being built, 202 and a page that reloads (503 when the builders' queue is full)."""
    from httpov import media
    from httpov.web.downloads import PAGE_KINDS

    job = job_id(job)
    if what not in PAGE_KINDS:
        abort(404)
    authorize(web().client.store, who(), Action.DOWNLOAD, job)  # before anything else is said of it
    if what == "video.mp4":
        media.ffmpeg_exe()  # before building anything: no ffmpeg, no video (HttpovError)
    return serve_download(job, what)


def _video_available() -> bool:
    from httpov import media
    from httpov.errors import HttpovError

    try:
        media.ffmpeg_exe()
        return True
    except HttpovError:
        return False
