"""The code base stays free of pyflakes, bugbear, pyupgrade and import-order findings (ruff's F, B,
UP and I rules, configured in
pyproject.toml): unused imports and variables, undefined names, mutable defaults, late-bound loop
variables in closures."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_f_b_up_and_i_rules_are_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the test extras: pip install -e .[test])")
    proc = subprocess.run([ruff, "check", "--output-format", "concise", "IMDLBenCo", "tests", "benchmarks", "scripts"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_the_rule_set_is_the_agreed_one():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert set(config["tool"]["ruff"]["lint"]["select"]) >= {"F", "B", "UP", "I"}
