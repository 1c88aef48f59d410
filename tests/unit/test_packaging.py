"""What pip installs: one top-level package, httpov; Celery's tunables inside it (httpov.celeryconfig), and the
checkout's top-level celeryconfig.py only a re-export of them for `celery` run in a checkout."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import httpov.celeryconfig
from httpov.celery import _own_config, _public

ROOT = Path(__file__).resolve().parents[2]


def test_the_distribution_installs_no_top_level_module() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py-modules" not in setuptools and setuptools["packages"]["find"]["include"] == ["httpov*"]


def test_httpov_reads_its_own_celeryconfig_which_the_top_level_file_only_re_exports() -> None:
    assert _own_config() is httpov.celeryconfig
    assert _public(httpov.celeryconfig)["worker_max_tasks_per_child"] == 200
    thin = ast.parse((ROOT / "celeryconfig.py").read_text())
    assert ast.get_docstring(thin) and [ast.unparse(node) for node in thin.body[1:]] == [
        "from httpov.celeryconfig import *"]
