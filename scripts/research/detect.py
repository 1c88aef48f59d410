#!/usr/bin/env python3
"""Issue #14: how can httpov tell that a scene uses radiosity or photons?  Section 6.

Renders the scene at 8x6 without AA (a full-size one-pixel window still pays a
pretrace: 0.45 CPU-s for the room) and reads povray's own
render statistics: 'Radiosity Time:   No radiosity' / 'Photon Time:      No photons'
appear when the feature is off; a time when it is on.  Text parsing of the .pov
misses includes, #if, macros, and +Q<9 (which turns radiosity off).
Usage: python scripts/research/detect.py [workdir]
"""
import re
import sys
from pathlib import Path

from common import BASE, SCENES, dump, run, wrapper

WD = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/httpov-research/detect")
WD.mkdir(parents=True, exist_ok=True)


def probe(label, scene, extra=()):
    r = run(BASE + [f"+I{scene}", f"+O{label}.png", "+W8", "+H6", "-A", *extra], WD, label)
    log = (WD / f"{label}.log").read_text()
    return {"scene": str(scene), "extra": list(extra), "cpu": round(r["cpu"], 3), "wall": round(r["wall"], 3),
            "radiosity": "Radiosity Time:   No radiosity" not in log,
            "photons": "Photon Time:      No photons" not in log,
            "radiosity_line": re.search(r"Radiosity Time:.*", log).group(0),
            "photon_line": re.search(r"Photon Time:.*", log).group(0),
            "pass_table": bool(re.search(r"^\s+Pass\s+Depth 0", log, re.M))}


def main():
    # radiosity hidden in an include file under #if: a text search of the main file misses it
    (WD / "hidden.inc").write_text('#if (1) global_settings { radiosity { } } #end\n')
    wrapper(WD / "hidden.pov", WD / "hidden.inc", 'camera { location -5*z look_at 0 } sphere { 0, 1 pigment { rgb 1 } }')
    (WD / "plain.pov").write_text('#version 3.7;\ncamera { location -5*z look_at 0 } light_source { <5,5,-5> rgb 1 }\n'
                                  'sphere { 0, 1 pigment { rgb 1 } }\n')
    res = [probe("room", SCENES / "room.pov"), probe("room_q8", SCENES / "room.pov", ("+Q8",)),
           probe("caustics", SCENES / "caustics.pov"), probe("hidden", WD / "hidden.pov"),
           probe("plain", WD / "plain.pov")]
    for r in res:
        print(r)
    dump(res, WD / "results.json")


if __name__ == "__main__":
    main()
