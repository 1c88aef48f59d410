"""Where things live in storage: every storage key httpov reads or writes is built here."""
from __future__ import annotations

import re

from httpov.errors import ResultError

#: A job id as httpov makes them (plan_job: 10 hex digits; any of these characters in older farms and tests).
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: A scene stored under its content hash, and a radiosity cache under its digest: the objects jobs share.
SCENE_KEY = re.compile(r"^scenes/[0-9a-f]{64}\.zip$")
RADIOSITY_KEY = re.compile(r"^radiosity/[0-9a-f]{64}\.rca$")
_NAME = re.compile(r"^[A-Za-z0-9_-]*$")  # one part of a stored name: no '/', '.' or '..'


def scene_key(sha256: str) -> str:
    """A scene archive, stored once by its content hash."""
    return f"scenes/{sha256}.zip"


def job_prefix(job_id: str) -> str:
    """Everything stored for one job: its batches, stitched frames and failed logs. ValueError for anything but a
    job id (a forged record may name 'other/frames' or '..'): every key of a job is built from here."""
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise ValueError(f"{job_id!r} is not a job id")
    return f"jobs/{job_id}/"


def batches_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}batches/"


def frames_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}frames/"


def logs_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}logs/"


def is_own(job_id: str, key: str) -> bool:
    """Whether `key` is one of the job's own objects: under its prefix, with no '.', '..' or empty part that could
    lead out of it. Only such keys are deleted with a job."""
    parts = key.split("/") if isinstance(key, str) else [""]
    return (isinstance(job_id, str) and bool(JOB_ID.match(job_id)) and key.startswith(f"jobs/{job_id}/")
            and not any(p in ("", ".", "..") for p in parts))


def is_shared(key: str) -> bool:
    """Whether `key` names an object jobs share (a scene zip, a radiosity cache): deleted only through references
    (httpov.references), never with one job."""
    return isinstance(key, str) and bool(SCENE_KEY.match(key) or RADIOSITY_KEY.match(key))


def downloads_prefix(job_id: str) -> str:
    """The web's downloads of a job (all frames as a zip, a contact sheet, a video), built once per job state."""
    return f"jobs/{job_id}/downloads/"


def download_key(job_id: str, version: str, what: str) -> str:
    """One download of a job (`what`: frames.zip, contact-sheet.png, video.mp4) as built from the results its done
    records named; `version` is a digest of those records, so a job rendered further or again builds anew."""
    return f"{downloads_prefix(job_id)}{version}-{what}"


def batch_key(job_id: str, batch_id: str, result: str = "") -> str:
    """A rendered batch's zip: its frames (or slice) and povray's log. `result` names the execution that stored it
    (each execution writes its own, and the batch's done record names the one that counts: DoneInfo.result); ''
    for the fixed name of results recorded before executions had their own. ResultError if either is not one name
    (a forged done record may name '../../other/frames/...'): the key always stays in the job's batches."""
    if not isinstance(batch_id, str) or not batch_id or not _NAME.match(batch_id) or not isinstance(result, str) \
            or not _NAME.match(result):
        raise ResultError(f"the done record of batch {batch_id!r} of job {job_id} names result {result!r}, which is "
                          "not a stored result's name: the record is not one httpov wrote")
    return f"{batches_prefix(job_id)}{batch_id}{'.' + result if result else ''}.zip"


def batch_of(key: str) -> str:
    """The batch id in a batch zip's key (either form of batch_key)."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def frame_key(job_id: str, name: str) -> str:
    """A stitched frame of a sliced job."""
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{name!r} is not a frame's file name")
    return f"{frames_prefix(job_id)}{name}"


def failed_log_key(job_id: str, batch_id: str) -> str:
    """povray's log of a batch's last failed attempt (a rendered batch's log is in its zip)."""
    return f"{logs_prefix(job_id)}{batch_id}.failed.log"


def checkpoint_key(job_id: str, batch_id: str) -> str:
    """A running batch's latest checkpoint (httpov.worker.checkpoint): one per batch, replaced as it is saved again,
    deleted when the batch is done and with its job."""
    return f"{job_prefix(job_id)}checkpoints/{batch_id}.zip"


def photon_map_key(job_id: str, frame: int) -> str:
    """A sliced frame's photon map (povray's photons save_file), shot once by the frame's pre-pass and loaded by its
    slices (httpov.worker.photons); the job's own, deleted with it."""
    return f"{job_prefix(job_id)}photons/f{int(frame):06d}.ph"


def radiosity_key(digest: str) -> str:
    """A radiosity pre-pass's cache (povray's Radiosity_File_Name file), stored once per scene, options, size and
    frame (plan.radiosity_digest); an empty file says the scene renders without radiosity."""
    return f"radiosity/{digest}.rca"
