"""Command-line options made from a model's constructor signature.

Every script (train, test, robustness, save-images, complexity) accepts the parameters of the
chosen model's ``__init__`` (or of a registered factory function) as options of the same name::

    python train.py --model MyModel --MyModel_Customized_param 3 --pre_trained_weights w.pth

Types come from the annotations, or from the default when a parameter is not annotated:

==========================  ==================================================================
annotation                  accepted on the command line
==========================  ==================================================================
``bool``                    ``--flag`` / ``--no-flag`` / ``--flag true|false|1|0|yes|no``
``int`` / ``float`` / str   one value, converted (``--n 3``)
``list[int]``, ``List[float]``, ``tuple[float, ...]``, ``Sequence[int]``
                            several values or one comma list: ``--s 4 2 1`` / ``--s 4,2,1`` / ``--s [4,2,1]``
``Optional[X]``             as ``X``, plus ``None`` / ``null``
``Literal["a", "b"]``       one of the listed values
==========================  ==================================================================

A parameter without a default is required: leaving it out is an error naming it. A parameter
whose name is also one of the script's own options is an error, except for the options a
script deliberately shares with models (``SHARED_SCRIPT_OPTIONS``, e.g. ``image_size``), whose
value the model receives.

We write this on plain ``argparse`` rather than jsonargparse: the generated ``.sh`` launchers
and published run scripts use IMDL-BenCo's flat ``--Name value`` style next to the script's
own argparse options, and we need one parser whose ``--help`` shows both, plus messages that
name the model and the parameter.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ModelOptionError

__all__ = [
    "SHARED_SCRIPT_OPTIONS",
    "ModelOptionError",
    "ModelParam",
    "model_params",
    "add_model_options",
    "model_kwargs_from_namespace",
    "parse_args_with_model",
    "str2bool",
]

#: Script options whose value a model constructor may also receive under the same name.
SHARED_SCRIPT_OPTIONS = frozenset({"image_size", "if_predict_label", "edge_mask_width", "if_padding", "if_resizing"})

_NONE_WORDS = {"none", "null"}
_TRUE_WORDS = {"true", "1", "yes", "y", "on", "t"}
_FALSE_WORDS = {"false", "0", "no", "n", "off", "f"}


def str2bool(text: str) -> bool:
    """``"true"/"1"/"yes"`` → True, ``"false"/"0"/"no"`` → False; anything else is an error."""
    word = str(text).strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false/1/0/yes/no), got {text!r}")


@dataclass
class ModelParam:
    """One constructor parameter as a command-line option."""

    name: str
    annotation: Any
    default: Any
    required: bool
    kind: str  # "bool" | "scalar" | "list" | "literal"
    convert: Callable[[str], Any]
    optional: bool
    type_name: str
    choices: tuple[Any, ...] | None = None


# ---------------------------------------------------------------------------------- types
def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        has_none = len(args) != len(typing.get_args(tp))
        if len(args) == 1:
            return args[0], has_none
        return typing.Union[tuple(args)], has_none  # noqa: UP007 - built from a tuple at run time
    return tp, False


def _type_name(tp: Any) -> str:
    if tp is inspect.Parameter.empty or tp is Any:
        return "str"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _scalar_converter(tp: Any, param: str) -> Callable[[str], Any]:
    if tp is bool:
        return str2bool
    if tp in (int, float, str):
        def convert(text: str, _tp=tp):
            try:
                return _tp(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"expected {_tp.__name__} for --{param}, got {text!r}") from None
        return convert
    if typing.get_origin(tp) is typing.Union:
        members = typing.get_args(tp)

        def convert_union(text: str):
            for member in members:
                try:
                    return _scalar_converter(member, param)(text)
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    continue
            raise argparse.ArgumentTypeError(f"--{param}: {text!r} matches none of {_type_name(tp)}")
        return convert_union
    # Unknown or missing annotation: keep the text.
    return str


def _with_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert_optional(text: str):
        if str(text).strip().lower() in _NONE_WORDS:
            return None
        return convert(text)
    return convert_optional


def _list_element_type(tp: Any) -> Any | None:
    """Element type when ``tp`` is a list-like annotation, else None."""
    if tp in (list, tuple):
        return str
    origin = typing.get_origin(tp)
    if origin in (list, tuple, list, tuple) or origin in _sequence_origins():
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return args[0] if args else str
    return None


def _sequence_origins() -> tuple:
    import collections.abc as abc
    return (abc.Sequence, abc.MutableSequence)


def _split_list(text: str) -> list[str]:
    text = str(text).strip()
    if text.startswith(("[", "(")) and text.endswith(("]", ")")):
        text = text[1:-1]
    return [piece.strip().strip("'\"") for piece in text.split(",") if piece.strip()]


def _type_hints(func: Callable, owner: str) -> dict[str, Any]:
    """The resolved annotations of ``func``'s parameters.

    ``typing.get_type_hints`` resolves them all at once and fails as a whole when one name does
    not resolve (e.g. imported under ``TYPE_CHECKING`` in a module with ``from __future__ import
    annotations``); then each parameter is resolved on its own, and one that still cannot be is
    an error naming it, never a silent fallback to the raw string (which would pass ``'3'`` for
    an int and ``'false'``, truthy, for a bool).
    """
    try:
        return typing.get_type_hints(func)
    except Exception:
        pass
    namespace = {**vars(typing), **getattr(func, "__globals__", {})}
    hints: dict[str, Any] = {}
    for name, annotation in getattr(func, "__annotations__", {}).items():
        if name == "return":
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace, {})  # noqa: S307 - the model's own annotation text
            except Exception as err:
                raise ModelOptionError(
                    f"{owner}: the annotation {annotation!r} of parameter {name!r} cannot be resolved "
                    f"({type(err).__name__}: {err}); a name imported only under TYPE_CHECKING is not available "
                    f"at run time. Annotate it with a type the command line can parse (int, float, bool, str, "
                    f"List[...], Optional[...], Literal[...]) imported normally"
                ) from None
        hints[name] = annotation
    return hints


def model_params(target: Callable) -> list[ModelParam]:
    """The options made from ``target``'s constructor (class) or signature (function)."""
    owner = getattr(target, "__name__", repr(target))
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError) as err:
        raise ModelOptionError(f"cannot read the signature of {owner}: {err}") from None
    hints = _type_hints(target.__init__ if inspect.isclass(target) else target, owner)

    params: list[ModelParam] = []
    for p in sig.parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = hints.get(p.name, p.annotation)
        required = p.default is inspect.Parameter.empty
        default = None if required else p.default
        if annotation is inspect.Parameter.empty or annotation is Any:
            # Unannotated: the default's type decides (an int default parses as int).
            if default is None:
                annotation = str
            elif isinstance(default, (list, tuple)):
                elem = type(default[0]) if default else str
                annotation = list[elem]
            else:
                annotation = type(default)
            optional = not required and default is None
        else:
            annotation, optional = _strip_optional(annotation)
            optional = optional or (not required and default is None)

        literal_choices = None
        if typing.get_origin(annotation) is typing.Literal:
            literal_choices = typing.get_args(annotation)
            first = type(literal_choices[0])
            base = _scalar_converter(first, p.name)
            kind = "literal"
            convert = base
        elif annotation is bool:
            kind, convert = "bool", str2bool
        elif _list_element_type(annotation) is not None:
            kind = "list"
            convert = _scalar_converter(_list_element_type(annotation), p.name)
        else:
            kind = "scalar"
            convert = _scalar_converter(annotation, p.name)
        if optional:
            convert = _with_none(convert)
        params.append(
            ModelParam(
                name=p.name,
                annotation=annotation,
                default=default,
                required=required,
                kind=kind,
                convert=convert,
                optional=optional,
                type_name=("Optional[" + _type_name(annotation) + "]") if optional else _type_name(annotation),
                choices=literal_choices,
            )
        )
    return params


class _ListAction(argparse.Action):
    """Collects ``--x 1 2 3``, ``--x 1,2,3`` or ``--x [1,2,3]`` into one list."""

    def __init__(self, *args, element: Callable[[str], Any], **kwargs):
        self.element = element
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) == 1 and str(values[0]).strip().lower() in _NONE_WORDS:
            setattr(namespace, self.dest, None)
            return
        items: list[Any] = []
        for value in values:
            for piece in _split_list(value):
                try:
                    items.append(self.element(piece))
                except argparse.ArgumentTypeError as err:
                    parser.error(f"argument {option_string}: {err}")
        setattr(namespace, self.dest, items)


def add_model_options(
    parser: argparse.ArgumentParser,
    target: Callable,
    script_options: Sequence[str] = (),
) -> list[ModelParam]:
    """Add ``target``'s constructor parameters to ``parser`` in a group of their own.

    ``script_options`` are the destinations the script itself defines; a parameter with such a
    name is an error unless it is in ``SHARED_SCRIPT_OPTIONS`` (then the script's value is used).
    Returns the parameters that became options.
    """
    owner = getattr(target, "__name__", repr(target))
    group = parser.add_argument_group(f"options of {owner} (from its __init__ signature)")
    added: list[ModelParam] = []
    taken = set(script_options)
    for param in model_params(target):
        if param.name in taken:
            if param.name in SHARED_SCRIPT_OPTIONS:
                continue
            raise ModelOptionError(
                f"{owner}.__init__ has a parameter '{param.name}', which is also an option of this script "
                f"(--{param.name}); rename the parameter so the two cannot be confused"
            )
        default_text = "required" if param.required else f"default: {param.default!r}"
        help_text = f"{param.type_name} ({default_text})"
        flag = f"--{param.name}"
        if param.kind == "bool":
            group.add_argument(
                flag, dest=param.name, nargs="?", const=True, type=param.convert,
                default=argparse.SUPPRESS, metavar="BOOL", help=help_text,
            )
            negatives = {f"--no-{param.name}", f"--no_{param.name}"}
            group.add_argument(*sorted(negatives), dest=param.name, action="store_false",
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        elif param.kind == "list":
            group.add_argument(
                flag, dest=param.name, nargs="+", action=_ListAction, element=param.convert,
                default=argparse.SUPPRESS, metavar="V", help=help_text,
            )
        else:
            group.add_argument(
                flag, dest=param.name, type=param.convert, default=argparse.SUPPRESS,
                choices=param.choices, metavar=None if param.choices else param.type_name.upper().replace(" ", ""),
                help=help_text,
            )
        added.append(param)
    return added


def model_kwargs_from_namespace(
    target: Callable, namespace: argparse.Namespace, params: list[ModelParam] | None = None
) -> dict[str, Any]:
    """The keyword arguments to build ``target`` with, from a parsed namespace.

    Parameters left out take their defaults; shared script options pass their value;
    a required parameter that is missing raises ``ModelOptionError`` naming it.
    """
    owner = getattr(target, "__name__", repr(target))
    values = vars(namespace)
    kwargs: dict[str, Any] = {}
    missing = []
    every_param = model_params(target)
    for param in params if params is not None else every_param:
        if param.name in values:
            kwargs[param.name] = values[param.name]
        elif param.required:
            missing.append(f"--{param.name} ({param.type_name})")
    # shared script options that the signature asks for
    for p in every_param:
        if p.name in SHARED_SCRIPT_OPTIONS and p.name in values and p.name not in kwargs:
            kwargs[p.name] = values[p.name]
    if missing:
        raise ModelOptionError(f"model {owner} needs {', '.join(missing)}: it has no default, so give it on the command line")
    return kwargs


#: the largest --config file read (bytes), and the most values its YAML may expand to (aliases
#: counted each time they are used): a small file cannot make the parser spend unbounded memory
CONFIG_MAX_BYTES = 1 << 20
CONFIG_MAX_NODES = 20_000


def _expanded_size(node: Any, memo: dict[int, int], limit: int) -> int:
    """Number of YAML nodes ``node`` stands for once every alias is expanded (memoised on shared
    nodes, so a "billion laughs" document is measured in linear time); stops past ``limit``."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a node that contains itself expands without end
    children: list[Any] = []
    value = getattr(node, "value", None)
    if isinstance(value, list):
        for item in value:
            children.extend(item if isinstance(item, tuple) else (item,))
    total = 1
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[key] = total
    return total


def load_yaml_bounded(text: str, what: str, max_nodes: int = CONFIG_MAX_NODES) -> Any:
    """``yaml.safe_load(text)``, refused (ValueError naming ``what``) when aliases would expand
    the document beyond ``max_nodes`` values."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, max_nodes) > max_nodes:
            raise ValueError(f"{what}: its aliases (&anchor / *alias) expand to more than {max_nodes} values; "
                             f"write the values out instead of repeating aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The ``{option: value}`` mapping of a ``--config`` file (YAML or JSON); a file that is
    missing, too large, unreadable, an alias bomb or not a mapping ends with the parser's usage
    error naming it."""
    import os

    if not os.path.isfile(path):
        parser.error(f"--config {path}: no such file")
    size = os.path.getsize(path)
    if size > CONFIG_MAX_BYTES:
        parser.error(f"--config {path}: {size} bytes; a configuration file is at most {CONFIG_MAX_BYTES} bytes")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if path.lower().endswith(".json"):
            import json

            data = json.loads(text)
        else:
            data = load_yaml_bounded(text, f"--config {path}")
    except Exception as err:  # yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError, alias bombs
        parser.error(f"--config {path}: cannot be read ({type(err).__name__}: {err})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        parser.error(f"--config {path}: expected a mapping of option names to values, found a {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        parser.error(f"--config {path}: option names must be text, found {bad[0]!r}")
    return {str(k).lstrip("-").replace("-", "_"): v for k, v in data.items()}


def typed_model_value(param: ModelParam, value: Any, where: str) -> Any:
    """``value`` (from a file or a checkpoint) as model parameter ``param`` takes it, strictly:
    an ``int`` parameter refuses 1.7, true and lists; a list parameter wants a list (or one
    comma-separated text) of its element type. Raises ModelOptionError naming it."""
    name = f"{where}{param.name!r} ({param.type_name})"
    if value is None:
        if param.optional:
            return None
        raise ModelOptionError(f"{name}: null is not a value of this option")
    if isinstance(value, str):
        try:
            if param.kind == "list":
                return [param.convert(v) for v in _split_list(value)]
            value = param.convert(value)
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise ModelOptionError(f"{name}: {err}") from None
        return value
    if param.kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ModelOptionError(f"{name}: expected a list, got {value!r}")
        element = _strip_optional(_list_element_type(param.annotation) or str)[0]
        return [_typed_scalar(element, v, name) for v in value]
    if param.kind == "literal":
        if value not in (param.choices or ()):
            raise ModelOptionError(f"{name}: must be one of {list(param.choices or ())}, got {value!r}")
        return value
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise ModelOptionError(f"{name}: expected true or false, got {value!r}")
        return value
    return _typed_scalar(param.annotation, value, name)


def _typed_scalar(tp: Any, value: Any, name: str) -> Any:
    if isinstance(value, str):
        try:
            return _scalar_converter(tp, name)(value)
        except (argparse.ArgumentTypeError, ValueError) as err:
            raise ModelOptionError(f"{name}: {err}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float)
                                                                                and not value.is_integer()):
            raise ModelOptionError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelOptionError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ModelOptionError(f"{name}: expected a text, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ModelOptionError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(value, (list, dict, set, tuple)):
        raise ModelOptionError(f"{name}: expected one value, got {value!r}")
    return value  # an annotation the command line keeps as text (Any, a class): passed as it is


def _apply_config(parser: argparse.ArgumentParser, config: dict[str, Any], where: str,
                  script_options: dict[str, Any] | None = None,
                  params: Sequence[ModelParam] = (), strict_keys: bool = True) -> dict[str, Any]:
    """Make ``config``'s values the parser's defaults, so that flags on the command line override
    them; every key must be an option of the script or of the model (unless ``strict_keys`` is
    False: then others are dropped), and every value is typed and range-checked by the option's
    definition (:mod:`IMDLBenCo.runoptions`) or the model parameter's annotation. Returns the
    values applied."""
    import difflib

    from . import runoptions

    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", argparse.SUPPRESS)}
    by_param = {p.name: p for p in params}
    script_options = script_options or {}
    defaults: dict[str, Any] = {}
    for key, value in config.items():
        action = actions.get(key)
        if action is None:
            if not strict_keys:
                continue
            close = difflib.get_close_matches(key, list(actions), n=3)
            hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
            parser.error(f"{where}: {key!r} is not an option of this script or of its model{hint}")
        try:
            if key in script_options:
                opt = script_options[key]
                value = runoptions.typed_value(opt, value, f"{where}: ")
                problem = runoptions.check_value(opt, value)
                if problem:
                    raise ValueError(f"{where}: {problem}")
            elif key in by_param:
                value = typed_model_value(by_param[key], value, f"{where}: ")
            elif isinstance(value, (list, dict)) and not isinstance(action, _ListAction):
                raise ValueError(f"{where}: {key!r}: expected one value, got {value!r}")
        except (ValueError, ModelOptionError) as err:
            parser.error(str(err))
        defaults[key] = value
    parser.set_defaults(**defaults)
    return defaults


def parse_args_with_model(
    script_parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    model_option: str = "model",
    base: dict[str, Any] | None = None,
    base_source: str = "",
    script_options: dict[str, Any] | None = None,
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Parse a script's options together with those of the model named by ``--model``.

    ``script_parser`` must be built with ``add_help=False``; the combined parser adds ``-h``,
    whose output lists the model's options when ``--model`` is given. Returns the namespace
    (script and model options) and the model's keyword arguments. Bad input exits with a
    usage message (status 2), as argparse does.

    ``base``: values below the ``--config`` file and the command line (e.g. what a checkpoint's
    training run recorded; keys that are not options here are dropped, values are typed);
    ``base_source`` names their origin in messages and in ``args._from_base`` (the names applied).
    ``script_options``: the script's option definitions (``runoptions.Option`` by name), used to
    type the values of a config file.
    """
    import sys

    from .registry import MODELS

    argv = list(sys.argv[1:] if argv is None else argv)
    probe, _ = script_parser.parse_known_args(argv)
    config_path = getattr(probe, "config", None)
    config = read_config(config_path, script_parser) if config_path else {}
    base = dict(base or {})
    if not isinstance(config.get(model_option, ""), str):
        script_parser.error(f"--config {config_path}: {model_option!r}: expected the name of a registered model, "
                            f"got {config[model_option]!r}")
    model_name = getattr(probe, model_option, None) or config.get(model_option) or base.get(model_option)

    full = argparse.ArgumentParser(
        parents=[script_parser],
        description=script_parser.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    params: list[ModelParam] = []
    target = None
    if model_name:
        try:
            target = MODELS.get(model_name)
        except KeyError as err:
            full.error(str(err.args[0]))
        script_dests = [a.dest for a in script_parser._actions]
        try:
            params = add_model_options(full, target, script_dests)
        except ModelOptionError as err:
            full.error(str(err))
    elif not any(a in ("-h", "--help") for a in argv) and not config and not base:
        _, unknown = full.parse_known_args(argv)
        flags = [a for a in unknown if a.startswith("--")]
        if flags:  # model options without a model: say what is missing, not "unrecognized"
            full.error(f"the option --{model_option} is required: {' '.join(flags[:4])}"
                       f"{' ...' if len(flags) > 4 else ''} can only be read as options of the model it names")
    from_base: dict[str, Any] = {}
    if base:
        from_base = _apply_config(full, base, base_source or "recorded options", script_options, params,
                                  strict_keys=False)
    if config:
        _apply_config(full, config, f"--config {config_path}", script_options, params)
        from_base = {k: v for k, v in from_base.items() if k not in config}
    args = full.parse_args(argv)
    given = _given_on_command_line(full, argv)
    args._from_base = {k: v for k, v in from_base.items() if k not in given and getattr(args, k, None) == v}
    model_kwargs: dict[str, Any] = {}
    if target is not None:
        try:
            model_kwargs = model_kwargs_from_namespace(target, args, params)
        except ModelOptionError as err:
            full.error(str(err))
    return args, model_kwargs


def _given_on_command_line(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set:
    """Destinations of the options that appear in ``argv`` (``--x v``, ``--x=v``, switches)."""
    by_flag = {flag: a.dest for a in parser._actions for flag in a.option_strings}
    return {by_flag[t.split("=", 1)[0]] for t in argv if t.split("=", 1)[0] in by_flag}
