"""docs/FAULTS.md stays true to the tests: every test and script it names as showing a fault exists, and every
`-k` it gives selects a test of that file."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULTS = (ROOT / "docs" / "FAULTS.md").read_text()
#: `tests/x/test_y.py`, `tests/x/test_y.py::test_z` or `tests/x/test_y.py -k "expr"` (after `python -m pytest `)
NAMED = re.compile(r"`(?:python -m pytest )?(tests/[\w/]+\.py)(?:::(\w+)| -k (\"[^\"]+\"|\w+))?`")


def _tests_of(path: Path) -> list[str]:
    return re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M)


def test_every_test_the_faults_table_names_exists_and_each_k_selects_one():
    named = NAMED.findall(FAULTS)
    assert len(named) >= 20, named
    wrong = []
    for file, function, expression in named:
        path = ROOT / file
        if not path.is_file():
            wrong.append(f"{file}: no such file")
            continue
        tests = _tests_of(path)
        if function and function not in tests:
            wrong.append(f"{file}::{function}: no such test")
        if expression:  # pytest -k: 'a or b' selects a test whose name holds a or b; each term must select one
            for term in re.split(r"\s+(?:or|and)\s+", expression.strip('"')):
                if not any(term in test for test in tests):
                    wrong.append(f"{file} -k {term}: selects no test")
    assert wrong == []


def test_every_script_the_faults_table_names_exists():
    scripts = set(re.findall(r"`python (scripts/\w+\.py)", FAULTS))
    assert scripts and [s for s in sorted(scripts) if not (ROOT / s).is_file()] == []
