"""Reading a scene: where its ini and .pov are, and which of the ini's options a render may use."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from httpov.errors import SceneError
from httpov.ini_keys import is_ini_key, unknown_key_warnings

# Options a scene may set, by their canonical ini name. Everything httpov controls itself (output file, display,
# frame subset, rows and columns, threads) and every shell-out command is absent, so a scene cannot set it.
ALLOWED_OPTIONS = {
    name.lower(): name
    for name in (
        "Input_File_Name", "Width", "Height", "Antialias", "Antialias_Threshold", "Antialias_Depth",
        "Antialias_Gamma", "Sampling_Method", "Jitter", "Jitter_Amount", "Quality", "Initial_Frame",
        "Final_Frame", "Initial_Clock", "Final_Clock", "Cyclic_Animation", "Field_Render", "Odd_Field",
        "Clock", "Clockless_Animation", "Output_Alpha", "Bits_Per_Color", "Library_Path", "Declare",
        "Version", "Bounding", "Bounding_Threshold", "Light_Buffer", "Vista_Buffer", "Remove_Bounds",
        "Split_Unions", "Display_Gamma", "File_Gamma", "Dither", "Dither_Method",
        "Subset_Start_Frame", "Subset_End_Frame",
    )
}

# Switches (+W320, -A, +KFF10 ...) mapped to the canonical name they set; the longest prefix wins.
SWITCHES = {
    "kfi": "Initial_Frame", "kff": "Final_Frame", "ki": "Initial_Clock", "kf": "Final_Clock",
    "kc": "Cyclic_Animation", "k": "Clock", "sf": "Subset_Start_Frame", "ef": "Subset_End_Frame",
    "w": "Width", "h": "Height", "am": "Sampling_Method", "a": "Antialias", "r": "Antialias_Depth",
    "j": "Jitter", "q": "Quality", "ua": "Output_Alpha", "i": "Input_File_Name", "l": "Library_Path",
    "mb": "Bounding_Threshold", "ag": "Antialias_Gamma",
}
MULTI_VALUED = {"Library_Path", "Declare"}

_SWITCH = re.compile(r"^[+-]([a-zA-Z]+)(.*)$")
_KEY_VALUE = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.*)$")


@dataclass
class SceneOptions:
    """The allow-listed options of a scene, and the warnings about what was dropped: `ignored`, the options POV-Ray
    knows that httpov sets itself or does not allow, and switches it does not take; `unknown`, the keys of
    `Key=Value` lines that are no POV-Ray ini option at all (a typo: see `typos`)."""

    options: dict[str, str | list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def typos(self) -> list[str]:
        """A warning per unknown key, with POV-Ray's option it most likely misspells ('Widht: did you mean
        Width?')."""
        return unknown_key_warnings(self.unknown)

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.options.get(name)
        if isinstance(value, list):
            return value[-1] if value else default
        return default if value is None else value

    def integer(self, name: str, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(float(value))
        except ValueError:
            raise SceneError(f"the ini sets {name}={value!r}, which is not a number") from None

    def set(self, name: str, value: str) -> None:
        if name in MULTI_VALUED:
            self.options.setdefault(name, [])
            self.options[name].append(value)  # type: ignore[union-attr]
        else:
            self.options[name] = value


def parse_ini(text: str) -> SceneOptions:
    """Parse a POV-Ray ini: `Key=Value` lines and `+X` switches before the first [section] (as povray does).

    As in povray, a `Key=Value` word, even after switches on a line (`+KFF120 declare=fp=1`), takes the rest of
    the line as its value. Several Declares of one name are kept in order: povray uses the first one.
    """
    result = SceneOptions()
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            break
        while line:
            option = _KEY_VALUE.match(line)
            if option:
                _take(result, option.group(1), _unquote(option.group(2)), line)
                break
            word, *rest = line.split(None, 1)
            _take_word(result, word)
            line = rest[0] if rest else ""
    return result


def _take(result: SceneOptions, key: str, value: str, text: str) -> None:
    name = ALLOWED_OPTIONS.get(key.lower())
    if name is None and not is_ini_key(key):
        result.unknown.append(key)
    elif name is None:
        result.ignored.append(text)
    else:
        result.set(name, value)


def _take_word(result: SceneOptions, word: str) -> None:
    match = _SWITCH.match(word)
    if match is None:
        if word.lower().endswith(".pov"):
            result.set("Input_File_Name", _unquote(word))
        else:
            result.ignored.append(word)
        return
    letters, rest = match.group(1).lower(), match.group(2)
    on = word[0] == "+"
    for length in range(len(letters), 0, -1):
        prefix = letters[:length]
        if prefix in SWITCHES and (length == len(letters) or rest == ""):
            name = SWITCHES[prefix]
            value = letters[length:] + rest
            break
    else:
        result.ignored.append(word)
        return
    if name == "Antialias":
        result.set("Antialias", "on" if on else "off")
        if on and value:
            result.set("Antialias_Threshold", value)
    elif name in ("Jitter", "Output_Alpha", "Cyclic_Animation") and not value:
        result.set(name, "on" if on else "off")
    elif value:
        result.set(name, _unquote(value))
    else:
        result.ignored.append(word)


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


@dataclass(frozen=True)
class SceneLayout:
    """Where a scene sits inside its archive."""

    root: str  # "" or "topfolder/"
    ini: str | None  # name relative to root
    pov: str  # name relative to root


def locate_scene(names: list[str], ini_text: Callable[[str], str],
                 prefer: str | None = None) -> tuple[SceneLayout, SceneOptions]:
    """Find the ini (pov.ini first) and the .pov it names, at the archive's root or inside one top folder.

    `ini_text(name)` returns the text of an archive member; `prefer` names the .ini or .pov the user chose.
    """
    files = [n for n in names if not n.endswith("/")]
    root = _root(files)
    inside = [n[len(root):] for n in files if n.startswith(root)]
    top = [n for n in inside if "/" not in n]
    inis = sorted(n for n in top if n.lower().endswith(".ini") and n.lower() != "povray.ini")
    povs = sorted(n for n in top if n.lower().endswith(".pov"))
    ini = "pov.ini" if "pov.ini" in inis else (inis[0] if len(inis) == 1 else None)
    if prefer is not None:
        ini = prefer if prefer.lower().endswith(".ini") else None
        povs = [prefer] if prefer.lower().endswith(".pov") else povs
    if ini is None and inis and not povs:
        raise SceneError(f"the scene has several ini files ({', '.join(inis)}) and none is named pov.ini")
    options = parse_ini(ini_text(root + ini)) if ini else SceneOptions()
    pov = options.get("Input_File_Name")
    if pov is None:
        if len(povs) != 1:
            what = "no .pov file" if not povs else f"several .pov files ({', '.join(povs)})"
            raise SceneError(f"the scene has no ini naming its .pov and {what}: add a pov.ini with Input_File_Name")
        pov = povs[0]
        options.set("Input_File_Name", pov)
    pov_path = PurePosixPath(pov)
    if pov_path.is_absolute() or ".." in pov_path.parts:
        raise SceneError(f"the ini names {pov!r} as its scene: it must be a file inside the scene archive")
    if pov_path.as_posix() not in inside:
        where = f"in {ini}" if ini else "as its scene"
        raise SceneError(f"the scene names {pov!r} {where}, but the archive has no such file")
    return SceneLayout(root=root, ini=ini, pov=pov_path.as_posix()), options


def _root(files: list[str]) -> str:
    """'' when the scene is at the archive's root, 'folder/' when everything sits inside one top folder."""
    if not files:
        raise SceneError("the scene archive is empty")
    tops = {n.split("/", 1)[0] for n in files}
    if len(tops) == 1 and all("/" in n for n in files):
        return tops.pop() + "/"
    return ""


def mentions(names: list[str], read: Callable[[str], bytes]) -> set[str]:
    """Which of 'radiosity' and 'photons' the scene's files mention, each file read once. Without 'radiosity' (any
    case: the keyword, or a macro of POV-Ray's rad_def.inc, whose arguments name it too) no scene turns radiosity
    on; without 'photons' none shoots photons. A render node's probe settles the rest: a mention in a comment,
    `#if`, or Quality below 9 all render without them."""
    found: set[str] = set()
    for name in names:
        if name.endswith("/"):
            continue
        data = read(name)
        if b"photons" in data:
            found.add("photons")
        if b"radiosity" in data.lower():
            found.add("radiosity")
        if len(found) == 2:
            break
    return found
