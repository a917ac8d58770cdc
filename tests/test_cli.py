"""The `benco` dispatcher: --version, the command list, and `benco env`."""

from __future__ import annotations

import torch

from IMDLBenCo import __version__
from IMDLBenCo.cli import main


def test_version_and_help_list_the_commands(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"IMDLBenCo codebase version: {__version__}"
    assert main([]) == 0  # no command: the help, with every command the dispatcher lists
    out = capsys.readouterr().out
    for command in ("init", "data", "demo", "report", "env"):
        assert command in out


def test_env_prints_the_installed_versions(capsys):
    assert main(["env"]) == 0
    rows = dict(line[2:].split(": ", 1) for line in capsys.readouterr().out.splitlines() if line.startswith("- "))
    assert rows["IMDLBenCo version"] == __version__
    assert rows["PyTorch version"] == torch.__version__
    assert rows["CPU threads"] == str(torch.get_num_threads())
    assert "gloo" in rows["Distributed backends"]
    assert rows["CUDA devices"] == (str(torch.cuda.device_count()) if torch.cuda.is_available() else
                                    "none (training and testing run on the CPU with the gloo backend)")


def test_env_tells_a_missing_package_from_a_broken_one(tmp_path, monkeypatch):
    from IMDLBenCo.cli.env import _version_of

    (tmp_path / "benco_broken_pkg.py").write_text("raise RuntimeError('bad build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _version_of("benco_surely_absent_pkg") == "not installed"
    assert _version_of("benco_broken_pkg") == "import failed (RuntimeError: bad build)"
