"""Where things live in storage: every storage key httpov reads or writes is built here."""
from __future__ import annotations


def scene_key(sha256: str) -> str:
    """A scene archive, stored once by its content hash."""
    return f"scenes/{sha256}.zip"


def job_prefix(job_id: str) -> str:
    """Everything stored for one job: its batches, stitched frames and failed logs."""
    return f"jobs/{job_id}/"


def batches_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/batches/"


def frames_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/frames/"


def logs_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/logs/"


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
    for the fixed name of results recorded before executions had their own."""
    return f"{batches_prefix(job_id)}{batch_id}{'.' + result if result else ''}.zip"


def batch_of(key: str) -> str:
    """The batch id in a batch zip's key (either form of batch_key)."""
    return key.rsplit("/", 1)[-1].split(".", 1)[0]


def frame_key(job_id: str, name: str) -> str:
    """A stitched frame of a sliced job."""
    return f"{frames_prefix(job_id)}{name}"


def failed_log_key(job_id: str, batch_id: str) -> str:
    """povray's log of a batch's last failed attempt (a rendered batch's log is in its zip)."""
    return f"{logs_prefix(job_id)}{batch_id}.failed.log"


def radiosity_key(digest: str) -> str:
    """A radiosity pre-pass's cache (povray's Radiosity_File_Name file), stored once per scene, options, size and
    frame (plan.radiosity_digest); an empty file says the scene renders without radiosity."""
    return f"radiosity/{digest}.rca"
