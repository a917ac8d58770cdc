"""One option table (issue 22) and values typed wherever they come from (issue 21)."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from IMDLBenCo import runoptions

PACKAGE = Path(__file__).resolve().parents[1] / "IMDLBenCo"


def test_each_option_is_defined_once_in_the_package():
    sources = {p: p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}
    for opt in runoptions.OPTIONS:
        definitions = [p for p, text in sources.items()
                       if re.search(rf"""add_argument\(\s*["']--{opt.name}["']""", text)
                       or re.search(rf"""_o\(\s*["']{opt.name}["']""", text)]
        assert [p.name for p in definitions] == ["runoptions.py"], opt.name


def test_parsers_offer_exactly_the_table():
    from IMDLBenCo.engine.arguments import build_script_parser

    for script in runoptions.SCRIPTS:
        dests = {a.dest for a in build_script_parser(script)._actions}
        assert dests == {o.name for o in runoptions.options_for(script)}, script


def test_train_config_fields_are_train_options():
    from IMDLBenCo.engine.config import TrainConfig

    names = {o.name for o in runoptions.options_for("train")}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= names


def test_derived_lists():
    assert {"epochs", "lr", "data_path", "val_split"} <= runoptions.train_only()
    assert "image_size" not in runoptions.train_only() and "bootstrap" not in runoptions.train_only()
    assert {"--if_padding", "--no_pin_mem", "--overwrite"} <= runoptions.switches()
    assert "--image_size" not in runoptions.switches()
    assert "model" in runoptions.report_keys() and "world_size" in runoptions.ignored_options()


def _train(tmp_path, config_text, extra=()):
    from IMDLBenCo.engine.arguments import parse_script_args

    cfg = tmp_path / "run.yaml"
    cfg.write_text(config_text)
    return parse_script_args("train", ["--config", str(cfg), "--model", "resnet", "--data_path", "d",
                                       "--if_resizing", *extra])


@pytest.mark.parametrize("text, message", [
    ("epochs: 1.5", "expected an integer"),
    ("epochs: true", "expected an integer"),
    ("batch_size: true", "expected an integer"),
    ("batch_size: [1, 2]", "expected an integer"),
    ("batch_size: null", "null"),
    ("epochs: -3", "1 or more"),
    ("output_dir: 123", "expected a text"),
    ("model: [resnet, vit]", "registered model"),
    ("lr: {a: 1}", "expected a number"),
    ("if_padding: 1", "on/off switch"),
    ("seed: 99999999999999999999", "seed"),
    ("amp_dtype: float64", "one of"),
])
def test_config_values_are_typed_and_checked(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exc:
        _train(tmp_path, text)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_options_in_a_config_are_typed(tmp_path, capsys):
    from IMDLBenCo.engine.arguments import parse_script_args
    from IMDLBenCo.registry import MODELS

    @MODELS.register_module(name="TypedOptionNet", force=True)
    class TypedOptionNet:  # noqa: F841 - registered for the parser
        def __init__(self, depth: int = 2, sizes: list = (1,), scale: float = 1.0):
            pass

    for text, message in (("depth: 1.7", "expected an integer"), ("depth: [1, 2]", "expected an integer"),
                          ("depth: true", "expected an integer"), ("sizes: 3", "expected a list")):
        cfg = tmp_path / "m.yaml"
        cfg.write_text("model: TypedOptionNet\n" + text)
        with pytest.raises(SystemExit):
            parse_script_args("test_complexity", ["--config", str(cfg), "--if_resizing"])
        assert message in capsys.readouterr().err
    cfg.write_text("model: TypedOptionNet\ndepth: 3\nscale: 2\n")
    _, kwargs = parse_script_args("test_complexity", ["--config", str(cfg), "--if_resizing"])
    assert kwargs["depth"] == 3 and kwargs["scale"] == 2.0 and isinstance(kwargs["scale"], float)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("seed: *i")
    started = time.monotonic()
    with pytest.raises(SystemExit):
        _train(tmp_path, "\n".join(lines))
    assert time.monotonic() - started < 5
    assert "alias" in capsys.readouterr().err


def test_a_huge_config_file_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _train(tmp_path, "# " + "x" * (2 << 20) + "\nepochs: 3\n")
    assert "bytes" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (("--start_epoch", "5", "--epochs", "1"), "nothing would be trained"),
    (("--seed", str(2**64 + 5)), "--seed"),
    (("--val_split", "0.2", "--val_data_path", "v"), "not both"),
    (("--val_split", "1.5"), "--val_split"),
    (("--bootstrap", "3"), "--bootstrap"),
])
def test_option_combinations_are_checked(tmp_path, capsys, extra, message):
    from IMDLBenCo.engine.arguments import parse_script_args

    with pytest.raises(SystemExit):
        parse_script_args("train", ["--model", "resnet", "--data_path", "d", "--if_resizing", *extra])
    assert message in capsys.readouterr().err


def test_warmup_outlasting_the_run_is_warned_about(tmp_path, caplog):
    from IMDLBenCo.engine.arguments import parse_script_args

    parse_script_args("train", ["--model", "resnet", "--data_path", "d", "--if_resizing", "--warmup_epochs", "2",
                                "--epochs", "2"])
    assert any("never reach" in r.getMessage() for r in caplog.records)
