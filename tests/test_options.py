import argparse
from typing import Literal

import pytest

from IMDLBenCo.options import (
    ModelOptionError,
    add_model_options,
    model_kwargs_from_namespace,
    parse_args_with_model,
)
from IMDLBenCo.registry import MODELS


class Typed:
    def __init__(
        self,
        flag: bool = False,
        count: int = 2,
        ratio: float = 0.5,
        title: str = "x",
        scales: list[float] = (4.0, 2.0),
        ids: list[int] = (1,),
        maybe: int | None = None,
        norm: Literal["BN", "LN", "IN"] = "BN",
        plain_int=7,
        plain_bool=True,
        plain_list=[1, 2],  # noqa: B006 - a list default, as users write them, is what is tested
    ):
        self.kw = dict(locals())
        self.kw.pop("self")


class NeedsParam:
    def __init__(self, MyModel_Customized_param: int, pre_trained_weights: str = ""):
        pass


def parse(cls, argv, script_options=()):
    parser = argparse.ArgumentParser(exit_on_error=False)
    params = add_model_options(parser, cls, script_options)
    ns = parser.parse_args(argv)
    return model_kwargs_from_namespace(cls, ns, params)


def test_defaults_stay_when_not_given():
    assert parse(Typed, []) == {}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--flag"], {"flag": True}),
        (["--flag", "false"], {"flag": False}),
        (["--flag", "1"], {"flag": True}),
        (["--no-flag"], {"flag": False}),
        (["--plain_bool", "False"], {"plain_bool": False}),
        (["--count", "3"], {"count": 3}),
        (["--plain_int", "9"], {"plain_int": 9}),
        (["--ratio", "0.25"], {"ratio": 0.25}),
        (["--scales", "4", "2", "1", "0.5"], {"scales": [4.0, 2.0, 1.0, 0.5]}),
        (["--scales", "4,2,1"], {"scales": [4.0, 2.0, 1.0]}),
        (["--ids", "[3, 4]"], {"ids": [3, 4]}),
        (["--plain_list", "5", "6"], {"plain_list": [5, 6]}),
        (["--maybe", "None"], {"maybe": None}),
        (["--maybe", "5"], {"maybe": 5}),
        (["--norm", "LN"], {"norm": "LN"}),
    ],
)
def test_typed_values(argv, expected):
    kwargs = parse(Typed, argv)
    assert kwargs == expected
    for key, value in expected.items():
        assert type(kwargs[key]) is type(value)


@pytest.mark.parametrize("argv", [["--count", "three"], ["--flag", "maybe"], ["--norm", "GN"], ["--ids", "a"]])
def test_bad_values_are_rejected(argv):
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parse(Typed, argv)


def test_missing_required_names_it():
    with pytest.raises(ModelOptionError, match=r"--MyModel_Customized_param \(int\)"):
        parse(NeedsParam, [])
    with pytest.raises((argparse.ArgumentError, SystemExit)):  # a required int does not accept None
        parse(NeedsParam, ["--MyModel_Customized_param", "None"])
    assert parse(NeedsParam, ["--MyModel_Customized_param", "3"]) == {"MyModel_Customized_param": 3}


def test_clash_with_script_option_is_reported():
    class Clashing:
        def __init__(self, lr: float = 0.1):
            pass

    with pytest.raises(ModelOptionError, match="--lr"):
        parse(Clashing, [], script_options=["lr"])


def test_shared_script_option_is_passed_through():
    class Sized:
        def __init__(self, image_size: int = 512, depth: int = 2):
            pass

    parser = argparse.ArgumentParser()
    parser.add_argument("--image_size", type=int, default=512)
    params = add_model_options(parser, Sized, ["image_size"])
    ns = parser.parse_args(["--image_size", "256"])
    assert model_kwargs_from_namespace(Sized, ns, params) == {"image_size": 256}


def test_factory_function_signature():
    def factory(depth: int = 3, use_bias: bool = True):
        return None

    assert parse(factory, ["--depth", "5", "--no_use_bias"]) == {"depth": 5, "use_bias": False}


@pytest.fixture
def registered_model():
    name = "OptionsTestModel"

    class OptionsTestModel:
        def __init__(self, width: int = 4, if_predict_label: bool = False):
            pass

    MODELS.register_module(name=name, module=OptionsTestModel, force=True)
    yield name
    MODELS._module_dict.pop(name, None)


def script_parser():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--model", required=True)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--if_predict_label", action="store_true")
    return p


def test_parse_args_with_model(registered_model):
    args, kwargs = parse_args_with_model(
        script_parser(), ["--model", registered_model, "--width", "8", "--lr", "0.01", "--if_predict_label"]
    )
    assert args.lr == 0.01
    assert kwargs == {"width": 8, "if_predict_label": True}


def test_help_lists_model_options(registered_model, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args_with_model(script_parser(), ["--model", registered_model, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--width" in out and "default: 4" in out and "--lr" in out


def test_unknown_option_and_unknown_model_exit_with_message(registered_model, capsys):
    with pytest.raises(SystemExit):
        parse_args_with_model(script_parser(), ["--model", registered_model, "--widht", "8"])
    assert "--widht" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args_with_model(script_parser(), ["--model", "OptionsTestModle"])
    assert 'Did you mean "OptionsTestModel"' in capsys.readouterr().err


TYPE_CHECKING_MODEL = '''
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import torch.nn as nn

if TYPE_CHECKING:
    from some_heavy_package import Config


class LateHints(nn.Module):
    def __init__(self, depth: int = 2, use_bn: bool = True, scales: List[float] = (1.0,),
                 name: Optional[str] = None, cfg: Optional[Config] = None) -> None:
        super().__init__()
        self.depth, self.use_bn = depth, use_bn


class Unresolvable(nn.Module):
    def __init__(self, width: Config = 3) -> None:
        super().__init__()
'''


def test_string_annotations_with_type_checking_imports_are_resolved(tmp_path, monkeypatch):
    """`from __future__ import annotations` + a TYPE_CHECKING import: get_type_hints fails for
    the whole signature; every other parameter must still get its real type, and a parameter
    whose type cannot be resolved is an error naming it (not a silent string)."""
    import importlib

    from IMDLBenCo.options import ModelOptionError, model_params

    (tmp_path / "late_hints.py").write_text(TYPE_CHECKING_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("late_hints")
    with pytest.raises(ModelOptionError, match=r"parameter 'cfg'"):
        model_params(module.LateHints)
    with pytest.raises(ModelOptionError, match=r"Unresolvable.*'Config' of parameter 'width'"):
        model_params(module.Unresolvable)


def test_string_annotations_parse_to_their_types(tmp_path, monkeypatch):
    import importlib

    (tmp_path / "late_ok.py").write_text(TYPE_CHECKING_MODEL.replace(", cfg: Optional[Config] = None", "")
                                         .split("class Unresolvable")[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("late_ok")
    from IMDLBenCo.registry import MODELS

    MODELS.register_module(module=module.LateHints, force=True)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model")
    _, kwargs = parse_args_with_model(parser, ["--model", "LateHints", "--depth", "3", "--use_bn", "false",
                                               "--scales", "0.5", "2"])
    assert kwargs["depth"] == 3 and kwargs["use_bn"] is False and kwargs["scales"] == [0.5, 2.0]
