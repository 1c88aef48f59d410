"""Unit tests: reading POV-Ray ini files and finding a scene inside an archive."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpov.errors import SceneError
from httpov.scene import ALLOWED_OPTIONS, locate_scene, parse_ini


def test_key_value_lines_and_comments():
    opts = parse_ini("Input_File_Name=scene.pov ; the scene\nWidth = 64\n; Height=9\nheight=48\n")
    assert opts.get("Input_File_Name") == "scene.pov"
    assert opts.integer("Width", 0) == 64
    assert opts.integer("Height", 0) == 48


def test_switches_map_to_canonical_options():
    opts = parse_ini("+W32 +H24\n+KFI1 +KFF25\n+A0.3 +AM2\n+UA\n-J\n")
    assert opts.options["Width"] == "32" and opts.options["Height"] == "24"
    assert opts.options["Initial_Frame"] == "1" and opts.options["Final_Frame"] == "25"
    assert opts.options["Antialias"] == "on" and opts.options["Antialias_Threshold"] == "0.3"
    assert opts.options["Sampling_Method"] == "2"
    assert opts.options["Output_Alpha"] == "on" and opts.options["Jitter"] == "off"


def test_only_lines_before_the_first_section_count():
    opts = parse_ini("Width=10\n[Other]\nWidth=99\n")
    assert opts.integer("Width", 0) == 10


@pytest.mark.parametrize("line", [
    "Pre_Scene_Command=touch /tmp/x", "Post_Frame_Command=rm -rf ~", "Output_File_Name=/etc/passwd",
    "Display=on", "Work_Threads=64", "Start_Row=5", "+O/tmp/out.png", "+SR10", "Fatal_Error_Command=sh",
])
def test_options_httpov_controls_or_forbids_are_dropped(line):
    opts = parse_ini(line + "\n")
    assert opts.options == {}
    assert opts.ignored


def test_bare_pov_name_sets_the_input_file():
    assert parse_ini("scene.pov\n").get("Input_File_Name") == "scene.pov"


def test_multi_valued_library_path_keeps_every_value():
    opts = parse_ini("Library_Path=inc\nLibrary_Path=more\n")
    assert opts.options["Library_Path"] == ["inc", "more"]


@given(st.text(max_size=300))
def test_any_text_parses_to_allowed_options_only(text):
    opts = parse_ini(text)
    assert set(opts.options) <= set(ALLOWED_OPTIONS.values())
    for value in opts.options.values():
        for item in value if isinstance(value, list) else [value]:
            assert "\n" not in item and "\r" not in item


def _reader(files):
    return lambda name: files[name]


def test_scene_inside_one_top_folder():
    files = {"job/pov.ini": "Input_File_Name=a.pov\n", "job/a.pov": "", "job/inc/x.inc": ""}
    layout, opts = locate_scene(list(files), _reader(files))
    assert (layout.root, layout.ini, layout.pov) == ("job/", "pov.ini", "a.pov")


def test_single_pov_without_ini():
    files = {"a.pov": ""}
    layout, opts = locate_scene(list(files), _reader(files))
    assert layout.pov == "a.pov" and layout.ini is None
    assert opts.get("Input_File_Name") == "a.pov"


@pytest.mark.parametrize("files, message", [
    ({"readme.txt": ""}, "no .pov file"),
    ({"a.pov": "", "b.pov": ""}, "several .pov files"),
    ({"pov.ini": "Input_File_Name=missing.pov\n", "a.pov": ""}, "no such file"),
    ({"pov.ini": "Input_File_Name=../../etc/x.pov\n"}, "inside the scene archive"),
    ({"pov.ini": "Input_File_Name=/etc/x.pov\n"}, "inside the scene archive"),
])
def test_unusable_scenes_are_refused_with_the_reason(files, message):
    with pytest.raises(SceneError, match=message):
        locate_scene(list(files), _reader(files))


def test_user_choice_of_ini_wins():
    files = {"pov.ini": "Input_File_Name=a.pov\n", "other.ini": "Input_File_Name=b.pov\n", "a.pov": "", "b.pov": ""}
    layout, _ = locate_scene(list(files), _reader(files), prefer="other.ini")
    assert layout.pov == "b.pov"


def test_declare_on_a_switch_line_is_kept_in_order_with_declare_lines():
    # povray (3.7.0.10, measured): `declare=fp=1` on a switch line declares fp; with a `Declare=fp=2` line too,
    # the first in the file wins, so httpov keeps every Declare in file order and passes them on in that order
    opts = parse_ini("+kff120 +kc declare=fp=1\nDeclare=fp=2\n")
    assert opts.ignored == []
    assert opts.options["Declare"] == ["fp=1", "fp=2"]
    assert opts.options["Final_Frame"] == "120" and opts.options["Cyclic_Animation"] == "on"
    assert parse_ini("Declare=fp=2\n+W8 declare=fp=1\n").options["Declare"] == ["fp=2", "fp=1"]


def test_a_key_value_word_takes_the_rest_of_its_line_as_povray_does():
    # povray reads `+W8 declare=q=3 +H16` as Declare="q=3 +H16": the +H16 is not a switch (measured)
    opts = parse_ini("+W8 declare=q=3 +H16\n+W8 Height=16\n")
    assert opts.options["Declare"] == ["q=3 +H16"]
    assert opts.options["Width"] == "8" and opts.options["Height"] == "16"
    assert parse_ini("+W8 Pre_Scene_Command=sh\n").ignored == ["Pre_Scene_Command=sh"]
