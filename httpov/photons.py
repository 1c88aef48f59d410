"""A shared photon map's scene edit: where `save_file` / `load_file` go in a copy of the user's scene, found textually,
or why the scene cannot be edited safely (then every slice shoots its own photons). Measured in docs/RADIOSITY.md.

povray takes a photon file only from the scene's own `photons { }` block in `global_settings`: a second block (a
wrapper's footer) resets every photon setting, an Include_Header is overridden by the scene's block. So the copy
is the user's .pov with one statement put just after `photons {` of the `global_settings` that holds it, and
nothing else changed. Anything that could make that block other than the one povray reads is refused: no
`global_settings`, several with `photons`, another that holds a directive or a macro call, the one with `photons`
inside `#if`/`#while`/`#for`/`#switch`/`#macro` (conditional, or built by a macro) or holding a `#` directive, a
macro call or no or several `photons` blocks, a scene that names `save_file`/`load_file` itself, and another file
of the scene whose `global_settings` holds `photons`, a directive or a macro call (an include may set its own
photons block). A plain `global_settings { assumed_gamma 1.0 }` beside it (optics.pov, grenadine's lemon.inc)
is harmless."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator

#: submit --photons: 'shared' gives each sliced photon frame one pre-pass whose photon map its slices load;
#: 'off' lets every slice shoot its own photons (what a single render does: the same pixels, more CPU).
PHOTON_MODES = ("shared", "off")
#: The words the edit must be the only one to write, and the one a scene must hold for photons to be planned.
_FILE_WORDS = (b"save_file", b"load_file")
#: Directives that open a block closed by `#end` (`#else`, `#case`, `#range`, `#break` do not change the depth).
_OPENS = {"if", "ifdef", "ifndef", "while", "for", "switch", "macro"}
_TOKEN = re.compile(r'//[^\n]*|/\*|"(?:\\.|[^"\\\n])*"?|#\s*[A-Za-z_]\w*|[A-Za-z_]\w*|[{}]|\S')


class NotShareable(ValueError):
    """A scene whose photons block cannot be found or edited safely: its slices shoot their own photons."""


def check_others(names: list[str], read: Callable[[str], bytes]) -> None:
    """NotShareable if a file of the scene other than its .pov (`names`) could set or name photon settings: it names
    `save_file` or `load_file`, or has a `global_settings` block that holds `photons`, a `#` directive or a macro
    call (a plain block such as `global_settings { assumed_gamma 1.0 }`, grenadine's lemon.inc, is left alone: it
    does not touch the photons block povray reads)."""
    for name in names:
        if name.endswith("/"):
            continue
        data = read(name)
        if any(word in data for word in _FILE_WORDS):
            raise NotShareable(f"{name} names a photon file (save_file or load_file)")
        if b"global_settings" not in data:
            continue
        words = [value for value, _ in _tokens(data.decode("utf-8", "replace"))]
        for at in (i for i, w in enumerate(words) if w == "global_settings"):
            why = _unsafe(words, at + 1)
            if why or "photons" in _block(words, at + 1):
                raise NotShareable(f"{name} has a global_settings block that may set photons "
                                   f"({why or 'its own photons block'})")


def insertion_point(text: str) -> int:
    """The offset just after `photons {` of the scene's only `global_settings`, where a `save_file`/`load_file`
    statement goes; NotShareable says why there is none that can be edited safely."""
    tokens = list(_tokens(text))
    words = [value for value, _ in tokens]
    if "save_file" in words or "load_file" in words:
        raise NotShareable("the scene names a photon file (save_file or load_file) itself")
    found = [i for i, w in enumerate(words) if w == "global_settings"]
    if not found:
        raise NotShareable("the scene file has no global_settings block (an include or a macro may set it)")
    with_photons = [at for at in found if "photons" in _block(words, at + 1)]
    for at in found:  # a plain block besides (optics.pov's `global_settings { assumed_gamma 1.0 }`) is harmless
        why = _unsafe(words, at + 1) if at not in with_photons else ""
        if why:
            raise NotShareable(f"a global_settings block of the scene file has {why}")
    if len(with_photons) > 1:
        raise NotShareable("the scene file has several global_settings blocks with photons")
    at = with_photons[0] if with_photons else found[-1]
    depth = 0
    for word in words[:at]:
        if word.startswith("#"):
            name = word[1:]
            depth += name in _OPENS
            depth -= name == "end"
    if depth:
        raise NotShareable("global_settings is inside a #if, #while, #for, #switch or #macro")
    if at + 1 >= len(words) or words[at + 1] != "{":
        raise NotShareable("global_settings is not followed by its block")
    level, blocks = 0, []
    for i in range(at + 1, len(tokens)):
        word = words[i]
        if word == "{":
            level += 1
        elif word == "}":
            level -= 1
            if level == 0:
                break
        elif word.startswith("#"):
            raise NotShareable(f"a {word} directive inside global_settings")
        elif _is_call(words, i):
            raise NotShareable(f"a macro call {word}() inside global_settings")
        elif word == "photons" and level == 1:
            blocks.append(i)
    else:
        raise NotShareable("the global_settings block is not closed")
    if not blocks:
        raise NotShareable("global_settings has no photons block")
    if len(blocks) > 1:
        raise NotShareable("global_settings has several photons blocks")
    if blocks[0] + 1 >= len(words) or words[blocks[0] + 1] != "{":
        raise NotShareable("photons in global_settings is not followed by its block")
    return tokens[blocks[0] + 1][1]


def edited(text: str, statement: str) -> str:
    """The scene with `statement` (httpov's own, such as `save_file "httpov-photons-1a2b.ph"`) put just inside the
    photons block of its global_settings; NotShareable if that block cannot be edited safely."""
    at = insertion_point(text)
    return f"{text[:at]} {statement} {text[at:]}"


#: POV-Ray's own functions, called with parentheses in a value (a macro call is any other word before '(').
_FUNCTIONS = {"abs", "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_and", "bitwise_or",
              "bitwise_xor", "ceil", "cos", "cosh", "defined", "degrees", "div", "exp", "floor", "int", "ln", "log",
              "max", "min", "mod", "pow", "radians", "select", "sin", "sinh", "sqrt", "tan", "tanh", "vdot",
              "vlength", "vcross", "vnormalize", "vrotate", "vaxis_rotate", "rgb", "rgbf", "rgbt", "rgbft"}


def _is_call(words: list[str], at: int) -> bool:
    word = words[at]
    return (at + 1 < len(words) and words[at + 1] == "(" and (word[:1].isalpha() or word[:1] == "_")
            and word not in _FUNCTIONS)


def _block(words: list[str], start: int) -> list[str]:
    """The words of the block that opens at words[start] ('{'), to its closing brace (or the end)."""
    if start >= len(words) or words[start] != "{":
        return []
    level = 0
    for i in range(start, len(words)):
        level += (words[i] == "{") - (words[i] == "}")
        if level == 0:
            return words[start:i + 1]
    return words[start:]


def _unsafe(words: list[str], start: int) -> str:
    """Why the block at words[start] could hide photon settings ('' if it cannot): a directive or a macro call."""
    block = _block(words, start)
    for i, word in enumerate(block):
        if word.startswith("#"):
            return f"a {word} directive inside it"
        if _is_call(block, i):
            return f"a macro call {word}() inside it"
    return "" if block else "no block after it"


def _tokens(text: str) -> Iterator[tuple[str, int]]:
    """(token, end offset) of the scene's words, directives ('#if'), braces and other characters, outside comments
    (POV-Ray's block comments nest) and strings (yielded as '"')."""
    pos, size = 0, len(text)
    while pos < size:
        match = _TOKEN.search(text, pos)
        if match is None:
            return
        token = match.group()
        if token.startswith("//"):
            pos = match.end()
            continue
        if token == "/*":
            depth, pos = 1, match.end()
            while depth and pos < size:
                close, open_ = text.find("*/", pos), text.find("/*", pos)
                if close < 0:
                    raise NotShareable("a comment is not closed")
                if 0 <= open_ < close:
                    depth, pos = depth + 1, open_ + 2
                else:
                    depth, pos = depth - 1, close + 2
            if depth:
                raise NotShareable("a comment is not closed")
            continue
        pos = match.end()
        if token.startswith('"'):
            yield '"', pos
        elif token.startswith("#"):
            yield "#" + token[1:].strip(), pos
        else:
            yield token, pos
