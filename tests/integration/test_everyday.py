"""Everyday use against real povray and real render nodes: Declare as povray reads it, failure text, logs of
failed batches, retried jobs' clocks, and `httpov render` leaving nothing in a shared Redis."""
from __future__ import annotations

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local import worker_env
from tests.conftest import pixels, povray_direct, write_scene

DECLARED = """#version 3.7;
global_settings { assumed_gamma 1 }
#ifndef (fp) #declare fp = 0; #end
camera { location <0, 0, -4> look_at 0 }
light_source { <-3, 5, -4> color rgb 1 }
background { rgb <fp / 3, 0.2, clock> }
sphere { <clock - 0.5, 0, 0>, 1 pigment { color rgb <1, fp / 2, 0> } }
"""


def test_declare_on_a_switch_line_and_a_declare_line_render_as_povray_does(tmp_path, settings, client, workers):
    # the way scenes take parameters: `+kff2 +kc declare=fp=1`; with a Declare= line after it, povray uses the first
    scene = write_scene(tmp_path / "decl", DECLARED, "Width=16\nHeight=12\n+KFI1 +kff2 +kc declare=fp=1\n"
                                                     "Declare=fp=2\n")
    sub = client.submit(scene, count=1)
    workers(concurrency=2)
    client.wait(sub.spec.id, timeout=120)
    images = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    assert [p.name for p in images] == ["decl_0001.png", "decl_0002.png"]
    for n, image in enumerate(images, 1):
        assert pixels(image) == pixels(tmp_path / "ref" / f"ref{n}.png")
    assert sub.ignored == []
