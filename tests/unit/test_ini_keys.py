"""An ini key that is no POV-Ray option is named with the option it most likely misspells; valid keys never warn."""
from __future__ import annotations

import pytest

from httpov.ini_keys import MAX_NAMED, POVRAY_INI_KEYS, is_ini_key, suggest, unknown_key_warning
from httpov.scene import ALLOWED_OPTIONS, SWITCHES, parse_ini


@pytest.mark.parametrize("typo, meant", [
    ("Widht", "Width"), ("widht", "Width"), ("WIDHT", "Width"), ("Heigth", "Height"),
    ("Antialias_Treshold", "Antialias_Threshold"), ("Final_Fram", "Final_Frame"), ("Qualty", "Quality"),
    ("Input_Filename", "Input_File_Name"), ("librar_path", "Library_Path"), ("Output_Filename", "Output_File_Name"),
    ("Bits_Per_Colr", "Bits_Per_Color"), ("Subset_Start_Frme", "Subset_Start_Frame"),
])
def test_a_typo_gets_povrays_spelling_of_the_option_it_misspells(typo: str, meant: str) -> None:
    assert suggest(typo) == meant
    assert unknown_key_warning(typo) == f"{typo}: did you mean {meant}? (the ini's line is ignored)"
    assert unknown_key_warning(typo, ignored=False) == f"{typo}: did you mean {meant}?"  # a strict submit's refusal


@pytest.mark.parametrize("key", ["Width", "width", "WIDTH", "Antialias_Threshold", "bits_per_colour", "Clock",
                                 "Output_File_Name", "Pre_Scene_Command", "Work_Threads", "Pause_When_Done"])
def test_povrays_own_keys_in_any_case_are_ini_keys_and_get_no_suggestion(key: str) -> None:
    assert is_ini_key(key)
    assert suggest(key) is None


@pytest.mark.parametrize("switch", ["+W640", "-W640", "+Widht", "-A0.3", "+KFF10"])
def test_switches_are_no_ini_keys(switch: str) -> None:
    assert not is_ini_key(switch)
    assert suggest(switch) is None


def test_a_key_close_to_nothing_says_so_and_a_hostile_one_is_shown_safely() -> None:
    assert suggest("Frobnicate") is None
    assert unknown_key_warning("Frobnicate") == ("Frobnicate: POV-Ray has no ini option of that name (the ini's line "
                                                 "is ignored)")
    said = unknown_key_warning("W\u202eidth" + "x" * 200)
    assert "\u202e" not in said and "\\u202e" in said and len(said) < 150


def test_every_option_httpov_takes_is_one_povray_reads() -> None:
    assert {name.lower() for name in ALLOWED_OPTIONS.values()} <= {k.lower() for k in POVRAY_INI_KEYS}
    assert set(SWITCHES.values()) <= set(POVRAY_INI_KEYS)


def test_parse_ini_parts_typos_from_options_httpov_drops() -> None:
    opts = parse_ini("Widht=640\nheight=48\nOutput_File_Name=x.png\nFrobnicate=1\n+W32 +Q9 +XYZ\nwidht=1\n")
    assert opts.options["Height"] == "48" and opts.options["Width"] == "32"
    assert opts.unknown == ["Widht", "Frobnicate", "widht"]
    assert opts.ignored == ["Output_File_Name=x.png", "+XYZ"]  # POV-Ray's, but httpov's to set; an unknown switch
    assert opts.typos == ["Widht: did you mean Width? (the ini's line is ignored)",
                          "Frobnicate: POV-Ray has no ini option of that name (the ini's line is ignored)",
                          "widht: did you mean Width? (the ini's line is ignored)"]


def test_a_valid_ini_warns_of_nothing() -> None:
    text = "\n".join(f"{key}=1" for key in POVRAY_INI_KEYS)
    assert parse_ini(text).unknown == []


def test_a_thousand_typos_are_a_few_lines() -> None:
    opts = parse_ini("".join(f"Typo{n}=1\n" for n in range(1000)))
    assert len(opts.unknown) == 1000
    assert len(opts.typos) == MAX_NAMED + 1
    assert opts.typos[-1] == f"and {1000 - MAX_NAMED} more ini key(s) POV-Ray has no option of (ignored)"
