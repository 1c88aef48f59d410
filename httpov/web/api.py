"""The JSON API that the pages and scripts share: each endpoint is the library call the CLI command makes."""
from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from httpov.access import Identity, Role
from httpov.errors import BadInputError, FieldError, SceneError
from httpov.options import OptionError, SubmitOptions, parse_priority
from httpov.plan import parse_frame_range, safe_name
from httpov.web.source import job_id

api = Blueprint("api", __name__, url_prefix="/api")

CONTROLS = ("cancel", "pause", "resume", "retry")
#: Submit's options a form or a script may send, as text (SubmitOptions' names, as the CLI's flags without the
#: dashes); the scene zip comes in the field `scene`, and `user` is taken from a bearer token's request only.
SUBMIT_FIELDS = ("name", "frames", "count", "slices", "priority", "radiosity_cache")


def web() -> Any:
    return current_app.extensions["httpov"]


def identity() -> Identity:
    """Who asks: today every signed-in account and bearer token acts as an admin, anyone else (public read) as a
    viewer. (The identity work of issue #24 replaces this with each account's own role.)"""
    user = g.get("user")
    if user is None:
        return Identity("anonymous", Role.VIEWER, address=request.remote_addr or "")
    return Identity(user, Role.ADMIN, address=request.remote_addr or "")


def wants_json() -> bool:
    """API calls, images and scripts get JSON errors; a browser asking for a page gets a page."""
    path = request.path
    return (path.startswith("/api/") or path.endswith(".png") or path.endswith(".zip") or path.endswith(".mp4")
            or "text/html" not in request.headers.get("Accept", ""))


def submit_upload(upload: Any, form: Mapping[str, str]) -> Any:
    """Client.submit of an uploaded scene zip with the CLI's options from form fields; FieldError names the field."""
    client = web().client
    given: dict[str, object] = {field: form[field] for field in SUBMIT_FIELDS if form.get(field)}  # empty: not given
    # the job is the signed-in user's; a script with a bearer token may name its user (default: the server's login)
    given["user"] = (form.get("user") or None) if g.get("bearer") else g.get("user")
    errors: dict[str, str] = {}
    try:
        options = SubmitOptions.parse(given, client.settings)
    except OptionError as exc:  # said with the form's field names
        errors = dict(exc.errors)
    if upload is None or not upload.filename:
        errors["scene"] = "choose a scene zip (the field `scene`)"
    if errors:
        raise FieldError(errors)
    if options.name is None:  # the upload's file name, as the CLI names a job after its scene, made safe
        options = replace(options, name=safe_name(PurePosixPath(upload.filename.replace("\\", "/")).stem))
    with tempfile.TemporaryDirectory(prefix="httpov-upload-") as tmp:
        path = Path(tmp) / "scene.zip"  # never the uploaded name: that is data, not a path
        upload.save(path)
        try:
            return client.submit(path, options, who=identity())
        except SceneError as exc:  # ArchiveError too: the zip is the problem
            raise FieldError({"scene": str(exc)}) from None
        except BadInputError as exc:  # what only the scene decides (--slices past its height): said as the CLI says it
            field = next((f for f in SUBMIT_FIELDS if str(exc).startswith(f"--{f.replace('_', '-')}")), "scene")
            raise FieldError({field: str(exc)}) from None


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
        try:
            span = parse_frame_range(frames)
        except BadInputError as exc:
            raise FieldError({"frames": str(exc)}) from None
        result = client.retry(job, frames=span)
    else:
        result = getattr(client, action)(job)
    answer: dict[str, Any] = {"id": job, "action": action, "state": client.store.state(job)}
    if isinstance(result, int):
        answer["batches_queued"] = result
    return answer


def delete(job: str) -> dict[str, Any]:
    """`httpov delete JOB`'s library call: a live job is refused (409), as the CLI refuses it without --force."""
    deleted = web().client.delete(job_id(job))
    return {"id": deleted.job_id, "action": "delete", "objects": deleted.objects, "redis_keys": deleted.redis_keys,
            "scene_deleted": deleted.scene_deleted}


def nodes() -> Any:
    """`httpov nodes --json`'s library call."""
    from httpov.nodes import farm_nodes

    client = web().client
    return farm_nodes(client.store, client.settings.lease_seconds)


def set_priority(job: str, raw: str | None) -> dict[str, Any]:
    """`httpov priority JOB N`'s library call."""
    priority = parse_priority(raw or "")
    web().client.set_priority(job_id(job), priority, who=identity())
    return {"id": job, "action": "priority", "priority": priority}


@api.get("/jobs")
def list_jobs():
    views = web().source.jobs(request.args.get("state") or None, request.args.get("user") or None)
    return jsonify([view.to_json() for view in views])


@api.get("/jobs/<job>")
def show_job(job: str):
    return jsonify(web().source.job(job).to_json())


@api.get("/jobs/<job>/frames")
def list_frames(job: str):
    return jsonify(web().source.frames(job))


@api.post("/jobs")
def submit_job():
    submission = submit_upload(request.files.get("scene"), request.form)
    spec = submission.spec
    return jsonify({"id": spec.id, "name": spec.name, "batches": len(spec.batches), "ignored": submission.ignored,
                    "notes": submission.notes, "description": submission.describe()}), 201


@api.post("/jobs/<job>/priority")
def priority_job(job: str):
    return jsonify(set_priority(job, request.form.get("priority")))


@api.post("/jobs/<job>/<action>")
def control_job(job: str, action: str):
    return jsonify(control(action, job, request.form.get("frames") or None))


@api.delete("/jobs/<job>")
def delete_job(job: str):
    return jsonify(delete(job))


@api.get("/nodes")
def list_nodes():
    return jsonify(nodes())


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
