"""A radiosity pre-pass on a render node: the probe, the whole-image pass that saves povray's radiosity cache, and
the options with which a slice (or frame) loads it. Measured in docs/RADIOSITY.md."""
from __future__ import annotations

import re
import secrets
from pathlib import Path

from httpov.plan import JobSpec

#: Footer of the pre-pass's wrapper scene: a second radiosity block merges with the scene's own, changing only the
#: fields it names. With always_sample off the final pass adds few samples of its own to the saved cache.
PREPASS_FOOTER = "global_settings { radiosity { always_sample off } }"
#: Footer of a slice's wrapper scene: the slice's own pretrace shrinks to one pass, so the samples it uses are the
#: pre-pass's, computed over the whole image, and the slice edges do not show.
LOADING_FOOTER = "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }"
#: The probe's image: povray's render statistics say whether radiosity is on, whatever turned it on or off.
PROBE_SIZE = (8, 6)
_NO_RADIOSITY = re.compile(r"^\s*Radiosity Time:\s+No radiosity", re.M)
_RADIOSITY_TIME = re.compile(r"^\s*Radiosity Time:", re.M)


def uses_radiosity(log: str) -> bool | None:
    """What a povray log's statistics say: True (radiosity on), False ('No radiosity'), None (no statistics)."""
    if _NO_RADIOSITY.search(log):
        return False
    return True if _RADIOSITY_TIME.search(log) else None


def probe_options() -> list[str]:
    """A tiny render of the frame with the scene's own settings (no AA): its statistics tell radiosity on or off."""
    return [f"+W{PROBE_SIZE[0]}", f"+H{PROBE_SIZE[1]}", "-A"]


def write_wrapper(scene_dir: Path, spec: JobSpec, footer: str) -> str:
    """A scene beside povray's working folder that includes the job's .pov by the same relative name and appends
    `footer`; the user's files are not touched. Answers its name, relative to `scene_dir`."""
    name = f"httpov-radiosity-{secrets.token_hex(6)}.pov"
    (scene_dir / name).write_text(f'#include "{spec.pov}"\n{footer}\n')
    return name


def cache_name() -> str:
    """A name for the radiosity file in the scene's working folder that no scene file holds."""
    return f"httpov-radiosity-{secrets.token_hex(6)}.rca"


def prepass_options(scene_dir: Path, spec: JobSpec, rca: str) -> list[str]:
    """The whole image without antialiasing, saving every radiosity sample to `rca`."""
    return [f"+I{write_wrapper(scene_dir, spec, PREPASS_FOOTER)}", "-A", f"Radiosity_File_Name={rca}", "+RFO"]


def loading_options(scene_dir: Path, spec: JobSpec, rca: str) -> list[str]:
    """A slice (or frame) loading the pre-pass's cache `rca`, its own pretrace cut to one pass."""
    return [f"+I{write_wrapper(scene_dir, spec, LOADING_FOOTER)}", f"Radiosity_File_Name={rca}", "+RFI"]
