"""A shared photon map's scene edit (httpov.photons): where save_file/load_file go, and every scene whose photons
block cannot be edited safely; the submit's plan and the probe's reading of povray's photon statistics."""
from __future__ import annotations

import pytest

from httpov.errors import BadInputError, SceneError
from httpov.photons import NotShareable, check_others, edited, insertion_point
from httpov.plan import Batch, JobSpec, check_batch, check_spec
from httpov.scene import mentions
from httpov.worker.photons import loaded_map, photons_shot

SCENE = """#version 3.7;
// global_settings { photons { } } in a comment is not the block
/* nor /* a nested */ global_settings { } */
#declare Spacing = 0.02;
global_settings {
  assumed_gamma 1.0
  radiosity { brightness 1 }
  photons { spacing Spacing autostop 0 }
}
camera { location <0, 1, -3> look_at 0 }
#declare Name = "photons { global_settings";
light_source { <2, 4, -3> rgb 1 photons { refraction on } }
"""


def test_the_statement_goes_just_inside_the_global_photons_block() -> None:
    out = edited(SCENE, 'save_file "httpov-photons-0a1b2c.ph"')
    assert 'photons { save_file "httpov-photons-0a1b2c.ph"  spacing Spacing autostop 0 }' in out
    assert out.replace(' save_file "httpov-photons-0a1b2c.ph" ', "", 1) == SCENE, "nothing else changes"
    assert SCENE[:insertion_point(SCENE)].endswith("  photons {")


@pytest.mark.parametrize("scene, why", [
    ("camera { location -z }", "no global_settings"),
    ("global_settings { photons { spacing 0.1 } }\nglobal_settings { photons { count 9 } }", "several global_settings"),
    ("global_settings { photons { spacing 0.1 } }\nglobal_settings { Gamma() }", "has a macro call Gamma"),
    ("#if (Photons)\nglobal_settings { photons { spacing 0.1 } }\n#end", "inside a #if"),
    ("#macro Settings()\nglobal_settings { photons { spacing 0.1 } }\n#end\nSettings()", "inside a #if"),
    ("#while (I < 1)\n#declare I = I + 1;\n#end\n#switch (Q)\n#case (1)\nglobal_settings { photons { } }\n#end",
     "inside a #if"),
    ("global_settings { assumed_gamma 1 }", "no photons block"),
    ("global_settings { photons { spacing 0.1 } photons { count 100 } }", "several photons blocks"),
    ("global_settings {\n#if (Q) photons { spacing 0.1 } #end\n}", "#if directive inside"),
    ("global_settings { #include \"photons.inc\" }", "#include directive inside"),
    ("global_settings { photons { spacing 0.1 } MorePhotons() }", "macro call MorePhotons"),
    ('global_settings { photons { spacing 0.1 load_file "user.ph" } }', "names a photon file"),
    ('#declare F = "x";\nglobal_settings { photons { spacing 0.1 save_file F } }', "names a photon file"),
    ("global_settings { photons { spacing 0.1 }", "not closed"),
    ("global_settings { photons spacing }", "not followed by its block"),
    ("/* global_settings { photons { } }", "comment is not closed"),
])
def test_a_scene_that_cannot_be_edited_safely_is_refused(scene: str, why: str) -> None:
    with pytest.raises(NotShareable, match=why):
        insertion_point(scene)


def test_povray_functions_in_a_value_are_no_macro_calls() -> None:
    scene = "global_settings { assumed_gamma pow(2.2, 1) photons { spacing max(0.01, 0.02) } }"
    assert scene[:insertion_point(scene)].endswith("photons {")


def test_a_plain_global_settings_beside_the_photons_one_is_harmless() -> None:
    scene = "global_settings { assumed_gamma 1.0 }\n#include \"colors.inc\"\nglobal_settings { photons { count 9 } }"
    assert scene[:insertion_point(scene)].endswith("photons {") and insertion_point(scene) > 40


def test_a_block_after_a_closed_conditional_is_found() -> None:
    scene = "#if (1)\n#declare A = 1;\n#else\n#declare A = 2;\n#end\nglobal_settings { photons { count 10 } }"
    assert scene[:insertion_point(scene)].endswith("photons {")


def test_other_files_of_the_scene_must_not_set_photons() -> None:
    files = {"scene/lemon.inc": b"#declare Lemon = sphere { 0, 1 }", "scene/tex.png": b"\x89PNG photons",
             "scene/": b""}
    check_others(list(files), files.__getitem__)
    assert mentions(list(files), files.__getitem__) == {"photons"}
    files["scene/lemon2.inc"] = b"global_settings{assumed_gamma 1.0}  // grenadine's lemon.inc: no photons"
    check_others(list(files), files.__getitem__)
    for data, why in ((b"global_settings { photons { } }", "its own photons block"),
                      (b"global_settings { max_trace_level 5 Photons() }", "macro call Photons"),
                      (b"global_settings {\n#include \"p.inc\"\n}", "#include directive"),
                      (b'#declare F = "load_file";', "names a photon file")):
        files["scene/settings.inc"] = data
        with pytest.raises(NotShareable, match=why):
            check_others(list(files), files.__getitem__)
    assert mentions(["a.pov"], lambda name: b"sphere { 0, 1 }") == set()
    assert mentions(["a.pov", "b.inc"], {"a.pov": b"photons {}", "b.inc": b"Radiosity {}"}.__getitem__) == {
        "photons", "radiosity"}


def test_povrays_photon_statistics() -> None:
    shot = "Photon Warning...\nNumber of photons shot:          212638\nSurface photons stored: 204419\n"
    assert photons_shot(shot) == 212638 and not loaded_map(shot)
    assert photons_shot("  Photon Time:      No photons\n") == 0
    loaded = "Photon Warning: Starting the load of photon file httpov-photons-0a1b2c3d4e5f.ph \n"
    assert photons_shot(loaded) == 0 and loaded_map(loaded)


def _spec(**given: object) -> JobSpec:
    values: dict = {"id": "0123456789", "name": "s", "scene_key": "scenes/" + "0" * 64 + ".zip", "root": "",
                    "pov": "scene.pov", "options": {}, "initial": 1, "final": 1, "first": 1, "last": 1,
                    "width": 64, "height": 64, "count": 1, "slices": [(1, 32), (33, 64)],
                    "batches": ["f000001-000001-pre", "f000001-000001-r00001-00032", "f000001-000001-r00033-00064"]}
    return JobSpec(**{**values, **given})


def test_a_photon_pre_pass_is_a_batch_only_of_a_sliced_job_that_shares_photons() -> None:
    spec = _spec(photons="shared")
    check_spec(spec)
    assert check_batch(spec, "f000001-000001-pre") == Batch(1, 1, prepass=True)
    with pytest.raises(BadInputError, match="no pre-pass"):
        check_batch(_spec(), "f000001-000001-pre")
    for bad in (_spec(photons="sometimes"), _spec(photons="shared", slices=None),
                _spec(photons="shared", radiosity="shared")):
        with pytest.raises(SceneError, match="photon"):
            check_spec(bad)


def test_a_scenes_other_files_are_checked_once_per_scene_in_a_render_process(tmp_path) -> None:
    """Each slice (and twice each pre-pass) writes a copy of the scene: its other files, textures and meshes too, are
    read for the check only the first time a process meets that scene (its key names immutable content)."""
    from httpov.worker.photons import write_copy

    pov = 'global_settings { photons { count 100 } }\n#include "more.inc"\nsphere { 0, 1 }\n'
    spec = _spec(scene_key="scenes/" + "1" * 64 + ".zip")
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        (folder / "scene.pov").write_text(pov)
    (first / "more.inc").write_text("#declare R = 1;\n")
    assert 'save_file "m.ph"' in (first / write_copy(first, spec, 'save_file "m.ph"')).read_text()
    # not read again: the same scene key is the same content, its check remembered (this copy, which a scene key
    # could never name, would be refused if it were read)
    (second / "more.inc").write_text("global_settings { photons { spacing 0.1 } }\n")
    assert 'load_file "m.ph"' in (second / write_copy(second, spec, 'load_file "m.ph"')).read_text()
    refused, third = _spec(scene_key="scenes/" + "2" * 64 + ".zip"), tmp_path / "c"
    third.mkdir()
    (third / "scene.pov").write_text(pov)
    (third / "more.inc").write_text("global_settings { photons { spacing 0.1 } }\n")
    for _ in range(2):  # and so is a refusal
        with pytest.raises(NotShareable, match="more.inc"):
            write_copy(third, refused, 'save_file "m.ph"')
