"""POV-Ray 3.7's ini option names, and what to say of a key that is none of them (a typo: "did you mean")."""
from __future__ import annotations

import difflib

from httpov.text import shown

#: Every `Key=Value` name POV-Ray 3.7 reads from an ini (RenderOptions_INI_Table in its
#: source/frontend/processrenderoptions.cpp; the same names are in the povray 3.7.0.10 binary), in its spelling.
#: httpov passes a scene only the allow-listed ones (httpov.scene.ALLOWED_OPTIONS) and drops the others with a warning
#: that it sets them itself or does not allow them; a key outside this list is no option at all, most likely a typo.
POVRAY_INI_KEYS = (
    "All_Console", "All_File", "Antialias_Depth", "Antialias", "Antialias_Threshold", "Antialias_Gamma",
    "Bits_Per_Color", "Bits_Per_Colour", "Bounding", "Bounding_Method", "Bounding_Threshold", "BSP_BaseAccessCost",
    "BSP_ChildAccessCost", "BSP_ISectCost", "BSP_MaxDepth", "BSP_MissChance", "Buffer_Output", "Buffer_Size",
    "Clock", "Clockless_Animation", "Compression", "Continue_Trace", "Create_Histogram", "Create_Ini",
    "Cyclic_Animation", "Debug_Console", "Debug_File", "Declare", "Display", "Display_Gamma", "Dither",
    "Dither_Method", "Draw_Vistas", "End_Column", "End_Row", "Fatal_Console", "Fatal_Error_Command",
    "Fatal_Error_Return", "Fatal_File", "Field_Render", "File_Gamma", "Final_Clock", "Final_Frame", "Frame_Step",
    "Grayscale_Output", "Height", "High_Reproducibility", "Histogram_Name", "Histogram_Grid_Size", "Histogram_Type",
    "Initial_Clock", "Initial_Frame", "Input_File_Name", "Include_Header", "Include_Ini", "Jitter_Amount", "Jitter",
    "Library_Path", "Light_Buffer", "Max_Image_Buffer_Memory", "Odd_Field", "Output_Alpha", "Output_File_Name",
    "Output_File_Type", "Output_To_File", "Palette", "Pause_When_Done", "Post_Frame_Command", "Post_Frame_Return",
    "Post_Scene_Command", "Post_Scene_Return", "Preview_End_Size", "Preview_Start_Size", "Pre_Frame_Command",
    "Pre_Frame_Return", "Pre_Scene_Command", "Pre_Scene_Return", "Quality", "Radiosity_File_Name",
    "Radiosity_From_File", "Radiosity_To_File", "Radiosity_Vain_Pretrace", "Real_Time_Raytracing", "Remove_Bounds",
    "Render_Block_Size", "Render_Block_Step", "Render_Console", "Render_File", "Render_Pattern", "Sampling_Method",
    "Split_Unions", "Start_Column", "Start_Row", "Statistic_Console", "Statistic_File", "Subset_End_Frame",
    "Subset_Start_Frame", "Test_Abort_Count", "Test_Abort", "User_Abort_Command", "User_Abort_Return", "Verbose",
    "Version", "Video_Mode", "Vista_Buffer", "Warning_Console", "Warning_File", "Warning_Level", "Width",
    "Work_Threads",
)
_BY_LOWER = {key.lower(): key for key in POVRAY_INI_KEYS}
#: How many unknown keys one submit names; past it one line says how many more (an ini of a thousand typos is still
#: a few lines of warnings, in the terminal and in the job's record).
MAX_NAMED = 10
#: A key is shown with at most this many characters.
MAX_KEY_SHOWN = 60


def is_ini_key(key: str) -> bool:
    """Whether POV-Ray 3.7 reads `key` (`Width`, `width`: POV-Ray ignores case) from an ini."""
    return key.lower() in _BY_LOWER


def suggest(key: str) -> str | None:
    """POV-Ray's ini option that `key` most likely misspells ('Widht' -> 'Width', 'antialias_treshold' ->
    'Antialias_Threshold'), in POV-Ray's spelling; None when nothing is close, or when `key` is no ini key at all
    (a `+W640` switch, a key POV-Ray knows)."""
    if not key or key[0] in "+-" or is_ini_key(key):
        return None
    close = difflib.get_close_matches(key.lower(), list(_BY_LOWER), n=1, cutoff=0.75)
    return _BY_LOWER[close[0]] if close else None


def unknown_key_warning(key: str, ignored: bool = True) -> str:
    """One line about an ini key POV-Ray has no option of: 'Widht: did you mean Width?' (the key shown safely),
    saying that its line is ignored unless `ignored` is False (a strict submit refuses the scene instead)."""
    name = shown(key[:MAX_KEY_SHOWN]) + ("..." if len(key) > MAX_KEY_SHOWN else "")
    guess = suggest(key)
    ask = f"did you mean {guess}?" if guess else "POV-Ray has no ini option of that name"
    return f"{name}: {ask}" + (" (the ini's line is ignored)" if ignored else "")


def unknown_key_warnings(keys: list[str], ignored: bool = True) -> list[str]:
    """The warnings for the ini's unknown keys, each named once (in the ini's order), at most MAX_NAMED of them."""
    unique = list(dict.fromkeys(keys))
    lines = [unknown_key_warning(key, ignored) for key in unique[:MAX_NAMED]]
    if len(unique) > MAX_NAMED:
        lines.append(f"and {len(unique) - MAX_NAMED} more ini key(s) POV-Ray has no option of"
                     + (" (ignored)" if ignored else ""))
    return lines
