"""The node's radiosity probe (an 8x6 render with the scene's own settings, radiosity.uses_radiosity on its log) on
real povray, with the radiosity settings of POV-Ray's own sample scenes copied into a tiny room (issue #27): every
sample that renders with radiosity is found, whatever its pretrace_start, and none that renders without."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from httpov.worker.radiosity import probe_options, uses_radiosity

pytestmark = pytest.mark.integration

ROOM = """#version 3.7;
camera { location <0, 1.5, -2.8> look_at <0, 1, 0> }
light_source { <0, 2.6, 0> color rgb 1 }
box { <-1.5, 0, -3>, <1.5, 3, 1.5> pigment { rgb 0.8 } finish { ambient 0 diffuse 0.9 } hollow }
box { <-0.5, 0, -0.5>, <0.5, 1, 0.5> pigment { rgb <0.9, 0.2, 0.2> } finish { ambient 0 diffuse 0.9 } }
"""

#: (sample scene, its radiosity settings as the scene turns them on or off, whether povray renders with radiosity).
#: /usr/share/doc/povray/examples/ of Debian's povray-examples 3.7; rad_def.inc is povray's own include.
SAMPLES = [
    ("radiosity/cornell.pov", "radiosity { pretrace_start 0.04 pretrace_end 0.01 count 200 recursion_limit 3 "
                              "nearest_count 10 error_bound 0.5 }", True),
    ("advanced/diffuse_back.pov", "#declare Radiosity = on;\n#if (Radiosity) radiosity { pretrace_start 0.04 "
                                  "pretrace_end 0.005 count 1000 nearest_count 10 error_bound 0.5 "
                                  "recursion_limit 2 } #end", True),
    ("radiosity/radiosity_37.pov", "radiosity { pretrace_start 0.08 pretrace_end 0.02 count 50 error_bound 0.5 "
                                   "recursion_limit 1 } /* radiosity { count 400 } */", True),
    ("radiosity/radiosity2.pov", "radiosity { pretrace_start 0.08 pretrace_end 0.04 count 35 nearest_count 5 "
                                 "error_bound 0.2 recursion_limit 1 }", True),
    ("advanced/blocks/stackerday.pov", "radiosity { pretrace_start 1 pretrace_end 1 count 50 recursion_limit 1 "
                                       "nearest_count 1 error_bound 0.1 }", True),
    ("camera/mesh_camera/baking_demo.pov", "radiosity { count 80 error_bound .5 nearest_count 10 "
                                           "recursion_limit 1 }", True),
    ("radiosity/rad_def_test_37.pov", '#include "rad_def.inc"\nradiosity { Rad_Settings(Radiosity_Default, off, '
                                      "off) }", True),
    ("radiosity/patio-radio_37.pov", "#declare Rad_Quality = 2;\n#switch (Rad_Quality) #case (1) radiosity { "
                                     "count 50 } #break #case (2) radiosity { pretrace_start 0.08 pretrace_end "
                                     "0.01 count 120 error_bound 0.25 recursion_limit 1 } #break #end", True),
    ("advanced/benchmark/benchmark.pov", "#declare use_radiosity = false;\n#if (use_radiosity = true) radiosity "
                                         "{ count 100 } #end", False),
    ("a block in a comment", "/* radiosity { } */", False),
]


def probe(folder: Path, settings: str, *options: str) -> subprocess.Popen:
    folder.mkdir()
    (folder / "scene.pov").write_text(f"global_settings {{ {settings} }}\n{ROOM}")
    return subprocess.Popen(["povray", "-D", "+WT1", "+Iscene.pov", "+Oprobe.png", *probe_options(), *options],
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_probe_finds_radiosity_in_every_sample_scene_that_renders_with_it(tmp_path):
    runs = {name: probe(tmp_path / f"s{i}", settings) for i, (name, settings, _) in enumerate(SAMPLES)}
    # Quality below 9 turns radiosity off even with the block present.
    low = probe(tmp_path / "q8", SAMPLES[0][1], "+Q8")
    found = {name: uses_radiosity(run.communicate(timeout=120)[0]) for name, run in runs.items()}
    assert found == {name: expected for name, _, expected in SAMPLES}
    assert uses_radiosity(low.communicate(timeout=120)[0]) is False


def test_a_pretrace_too_coarse_for_the_probe_still_counts_as_radiosity(tmp_path):
    """cornell.pov's pretrace_start 0.04 x 8 pixels runs no pretrace step: povray's statistics say 'Radiosity
    Time: No radiosity', the samples its final pass computed say otherwise."""
    log = probe(tmp_path / "cornell", SAMPLES[0][1]).communicate(timeout=120)[0]
    assert "Radiosity Time:   No radiosity" in log
    assert uses_radiosity(log) is True
