"""scripts/setup_env.sh says what it installs and about how long before each long step, then
one line when there is nothing to do (run here with a stand-in Python: nothing is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r"""#!/bin/sh
here="$(cd "$(dirname "$0")" && pwd)"
case "$1" in
    --version) echo "Python 3.11.7"; exit 0 ;;
    -c) [ -f "$here/../torch_installed" ]; exit $? ;;
esac
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "$*" >> "$here/../pip.log"
    case "$*" in *torch==*) touch "$here/../torch_installed" ;; esac
    exit 0
fi
exit 3
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_announces_each_step_then_says_it_is_up_to_date(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup_env.sh", tmp_path / "scripts" / "setup_env.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHON": str(fake)}
    first = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("[setup] creating .venv with Python 3.11.7")
    assert "installing PyTorch 2.14.1" in lines[1] and "2.5 GB" in lines[1] and "2 to 5 minutes" in lines[1]
    assert "installing imdlbenco (editable)" in lines[2] and "about 1 minute" in lines[2]
    assert lines[3].startswith("[setup] .venv ready in ") and len(lines) == 4
    pip_log = (tmp_path / ".venv" / "pip.log").read_text()
    assert "torch==2.14.1" in pip_log and "-e .[test]" in pip_log
    again = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and again.stdout.splitlines() == [f"[setup] .venv is up to date ({tmp_path}/.venv)"]
