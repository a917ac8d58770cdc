"""Protocol files: read a YAML protocol, check every key, resolve its paths (docs/bench.md).

Every mistake in a file is found in one pass and reported together, one line each, naming the
file and the key (``models[2].options.lr``), what was wrong and what to write instead
(:class:`ProtocolError`). Nothing here imports torch: the checks that need a model (its own
options) run when the plan is made (:mod:`IMDLBenCo.bench.plan`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

__all__ = ["ProtocolError", "Protocol", "ModelEntry", "InputRule", "Metric", "Attack", "Robustness",
           "load_protocol", "shipped_protocols", "find_protocol", "default_out", "METRICS", "ATTACKS", "RESERVED_OPTIONS",
           "protocol_names"]

SHIPPED_DIR = Path(__file__).resolve().parent / "protocols"

#: evaluator classes of IMDLBenCo.evaluation a protocol may name (``metrics:``)
METRICS = ("PixelF1", "PixelAUC", "PixelAUPRC", "PixelIOU", "PixelAccuracy", "PixelF1Best", "PixelFPR",
           "ImageF1", "ImageAUC", "ImageAccuracy", "ImageAP", "ImageBalancedAccuracy", "ImageMCC", "ImageTPR",
           "ImageTNR")
#: attack name → robustness wrapper class of IMDLBenCo.transforms
ATTACKS = {"GaussianBlur": "GaussianBlurWrapper", "GaussianNoise": "GaussianNoiseWrapper",
           "JpegCompression": "JpegCompressionWrapper"}
#: script options that benco bench sets itself, and the protocol key that sets each
RESERVED_OPTIONS = {
    "model": "the model entry's `model`", "data_path": "`train.data`", "val_split": "`train.val_split`",
    "val_data_path": "`train.val`", "test_data_path": "`test`", "test_data_json": "`test`",
    "checkpoint_path": "the model entry's `checkpoint` (or training)", "output_dir": "`benco bench --out`",
    "log_dir": "`benco bench --out`", "resume": "benco bench (it resumes an interrupted training itself)",
    "overwrite": "benco bench", "config": "the protocol itself", "start_epoch": "benco bench (resume)",
    "bootstrap": "the protocol's `bootstrap`", "image_size": "`input` (or the model entry's `input`)",
    "if_padding": "`input` (rule: padding)", "if_resizing": "`input` (rule: resizing)",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_TOP_KEYS = ("name", "description", "data_root", "synth", "weights_dir", "train", "test", "robustness", "metrics",
             "input", "bootstrap", "threads", "options", "models")
_TRAIN_KEYS = ("data", "val_split", "val", "augmentation", "options")
_MODEL_KEYS = ("model", "id", "import", "recipe", "options", "train_options", "test_options", "checkpoint", "input")
_SYNTH_KEYS = ("n", "size", "seed")
_RULES = ("padding", "resizing")


class ProtocolError(UsageError):
    """A protocol file that cannot be run: one line per mistake, each naming the file and the key."""


@dataclass(frozen=True)
class InputRule:
    """The network input: images padded (zero, top-left) or resized to ``image_size``²."""

    image_size: int
    rule: str  # "padding" or "resizing"

    def options(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "if_padding": self.rule == "padding",
                "if_resizing": self.rule == "resizing"}


@dataclass(frozen=True)
class Metric:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attack:
    name: str  # GaussianBlur, GaussianNoise, JpegCompression
    levels: tuple[Any, ...]
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the wrapper


@dataclass
class Robustness:
    sets: list[str] | None  # None: every test set
    attacks: list[Attack] | None  # None: IMDL-BenCo's grid (test_robust.py's default)


@dataclass
class ModelEntry:
    """One ``models:`` entry: a registered model trained by the protocol, or a given checkpoint."""

    index: int
    id: str
    model: str
    imports: list[str]
    recipe: bool | None  # None: the zoo recipe when there is one
    options: dict[str, Any]
    train_options: dict[str, Any]
    test_options: dict[str, Any]
    checkpoint: str | None  # absolute path; None: trained by the protocol
    input: InputRule | None

    @property
    def key(self) -> str:
        return f"models[{self.index}] ({self.id})"


@dataclass
class Protocol:
    """A checked protocol with absolute paths."""

    name: str
    description: str
    file: Path
    sha256: str
    shipped: bool
    data_root: Path
    synth: dict[str, int] | None
    weights_dir: Path
    train_data: str | None
    val_split: float | None
    val: str | None
    augmentation: str
    options: dict[str, Any]
    train_options: dict[str, Any]
    test_sets: dict[str, str]  # name → absolute path (empty when `test` names a test_datasets.json)
    test_file: str | None  # `test: some/test_datasets.json`
    robustness: Robustness | None
    metrics: list[Metric]
    input: InputRule | None  # None: each model's recipe
    bootstrap: int | None
    threads: int | None  # torch CPU threads per cell process (None: PyTorch's default)
    models: list[ModelEntry]
    source_dir: Path  # where `import:` modules and relative model paths are looked for

    def summary(self) -> dict[str, Any]:
        """``{"name", "file", "sha256"}``: what results.json's ``protocol`` key starts from."""
        return {"name": self.name, "file": str(self.file), "sha256": self.sha256}


# --------------------------------------------------------------------------------------------- finding


def shipped_protocols() -> dict[str, Path]:
    """``{name: file}`` of the protocols shipped with the package (``benco bench --list``)."""
    out: dict[str, Path] = {}
    for path in sorted(SHIPPED_DIR.glob("*.yaml")):
        out[path.stem] = path
    return out


def protocol_names(path: Path) -> tuple[str, str]:
    """(name, description) of a shipped protocol file, read without checking it."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        return path.stem, ""
    return str(data.get("name") or path.stem), " ".join(str(data.get("description") or "").split())


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_protocol(arg: str) -> tuple[Path, bool]:
    """The protocol file for ``arg`` (a file, or the name of a shipped protocol) and whether it is shipped."""
    path = Path(arg)
    if path.is_file():
        return path.resolve(), False
    shipped = shipped_protocols()
    wanted = _norm(arg)
    for stem, file in shipped.items():
        names = {_norm(stem), _norm(protocol_names(file)[0])}
        names |= {n[len("protocol"):] for n in names if n.startswith("protocol")}
        if wanted in names:
            return file, True
    if path.exists():
        raise ProtocolError(f"{arg}: is a folder; give a protocol file (YAML) or the name of a shipped protocol")
    raise ProtocolError(f"{arg}: no such protocol file, and no shipped protocol of that name; shipped: "
                        f"{', '.join(shipped)} (`benco bench --list`)")


def default_out(file: Path) -> Path:
    """``./bench_<file name without .yaml>``: where ``benco bench`` writes without ``--out``."""
    return Path.cwd() / f"bench_{file.stem}"


# --------------------------------------------------------------------------------------------- reading


def _read_yaml(path: Path) -> Any:
    from ..options import load_yaml_bounded

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ProtocolError(f"{path}: cannot be read ({err})") from None
    try:
        return load_yaml_bounded(text, str(path))
    except Exception as err:  # yaml.YAMLError and the size guard: one message with the position
        raise ProtocolError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None


class _Checker:
    """Collects the mistakes of one file."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")

    def keys(self, where: str, data: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; expected one of {', '.join(allowed)}"
                self.add(f"{where}{key}" if where else str(key), f"unknown key{hint}")

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(key, f"expected a mapping (key: value lines), found {_show(value)}")
            return {}
        return value

    def text(self, key: str, value: Any, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.add(key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(key, f"expected a text, found {_show(value)}")
            return None
        return value


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _int(check: _Checker, key: str, value: Any, low: int, high: int | None = None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"{low} or more"
        check.add(key, f"expected an integer {span}, found {_show(value)}")
        return None
    return value


def _input_rule(check: _Checker, key: str, value: Any) -> InputRule | None:
    data = check.mapping(key, value)
    if not data:
        if value is not None and isinstance(value, dict):
            check.add(key, "expected image_size and rule (padding or resizing)")
        return None
    check.keys(f"{key}.", data, ("image_size", "rule"))
    size = _int(check, f"{key}.image_size", data.get("image_size"), 1)
    rule = data.get("rule")
    if rule not in _RULES:
        check.add(f"{key}.rule", f"expected padding (zero-pad to image_size², top-left) or resizing, found "
                                 f"{_show(rule)}")
        return None
    return InputRule(size, rule) if size is not None else None


def _options(check: _Checker, key: str, value: Any, scripts: tuple[str, ...]) -> dict[str, Any]:
    """A mapping of script options (typed and range-checked by the option table) and model options
    (checked when the plan parses them with the model)."""
    from .. import runoptions

    data = check.mapping(key, value)
    out: dict[str, Any] = {}
    known = runoptions.names(scripts)
    every = runoptions.names()
    for name, val in data.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            check.add(where, "option names are identifiers (the script's or the model's option without '--')")
            continue
        if name in RESERVED_OPTIONS:
            check.add(where, f"set by benco bench from {RESERVED_OPTIONS[name]}; remove it here")
            continue
        if name in every and name not in known:
            check.add(where, f"--{name} is not an option of {' or '.join(s + '.py' for s in scripts)}")
            continue
        if name in known:
            opt = runoptions.option(name)
            try:
                val = runoptions.typed_value(opt, val, "")
            except ValueError as err:
                check.add(where, str(err))
                continue
            problem = runoptions.check_value(opt, val)
            if problem:
                check.add(where, problem)
                continue
        elif isinstance(val, dict):
            check.add(where, f"expected a value (or a list), found {_show(val)}")
            continue
        out[name] = val
    return out


def _metrics(check: _Checker, value: Any) -> list[Metric]:
    if value is None:
        return [Metric("PixelF1")]
    if not isinstance(value, list) or not value:
        check.add("metrics", f"expected a list of evaluator names (e.g. [PixelF1, ImageAUC]), found {_show(value)}")
        return []
    out: list[Metric] = []
    for i, item in enumerate(value):
        where = f"metrics[{i}]"
        name, params = (item, {}) if isinstance(item, str) else (None, None)
        if isinstance(item, dict) and len(item) == 1:
            name, params = next(iter(item.items()))
            params = check.mapping(f"{where}.{name}", params)
        if not isinstance(name, str):
            check.add(where, f"expected an evaluator name or {{Name: {{parameter: value}}}}, found {_show(item)}")
            continue
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRICS, n=1)
            check.add(where, f"unknown evaluator {name!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                                              f"; expected one of {', '.join(METRICS)}"))
            continue
        out.append(Metric(name, dict(params or {})))
    return out


def _attacks(check: _Checker, value: Any) -> list[Attack] | None:
    if value is None or value == "default":
        return None
    data = check.mapping("robustness.attacks", value)
    out: list[Attack] = []
    for name, spec in data.items():
        where = f"robustness.attacks.{name}"
        canonical = name[:-len("Wrapper")] if isinstance(name, str) and name.endswith("Wrapper") else name
        if canonical not in ATTACKS:
            check.add(where, f"unknown attack; expected one of {', '.join(ATTACKS)}")
            continue
        params: dict[str, Any] = {}
        levels = spec
        if isinstance(spec, dict):
            params = {k: v for k, v in spec.items() if k != "levels"}
            levels = spec.get("levels")
        if (not isinstance(levels, list) or not levels
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)):
            check.add(where, f"expected a list of strengths (e.g. [0, 3, 7]) or {{levels: [...], <wrapper "
                             f"option>: value}}, found {_show(spec)}")
            continue
        out.append(Attack(canonical, tuple(levels), params))
    return out


def _check_name(check: _Checker, key: str, value: str, what: str) -> bool:
    if not _NAME.match(value):
        check.add(key, f"{value!r}: {what} names become folder names: letters, digits and . _ + - only, not "
                       f"starting with a dot")
        return False
    return True


# --------------------------------------------------------------------------------------------- loading


def load_protocol(arg: str, data_root: str | None = None, out: str | None = None) -> Protocol:
    """Read and check the protocol ``arg`` (a file or a shipped name).

    ``data_root`` (``--data-root``) overrides the file's ``data_root``; ``out`` (``--out``) is
    where a ``synth:`` protocol generates its data by default (``OUT/data``).
    """
    file, shipped = find_protocol(arg)
    raw = file.read_bytes()
    check = _Checker(file)
    data = _read_yaml(file)
    if not isinstance(data, dict):
        raise ProtocolError(f"{file}: expected a mapping with keys {', '.join(_TOP_KEYS)}, found {_show(data)}")
    check.keys("", data, _TOP_KEYS)
    name = check.text("name", data.get("name")) or file.stem
    description = " ".join(str(data.get("description") or "").split())
    # where relative paths of a shipped file point: the current folder (the package folder is no place for data)
    source_dir = Path.cwd() if shipped else file.parent

    synth = None
    if data.get("synth") is not None:
        spec = check.mapping("synth", data["synth"])
        check.keys("synth.", spec, _SYNTH_KEYS)
        synth = {"n": _int(check, "synth.n", spec.get("n", 200), 6), "size": _int(check, "synth.size",
                 spec.get("size", 128), 32), "seed": _int(check, "synth.seed", spec.get("seed", 0), 0)}
    root_text = check.text("data_root", data.get("data_root"))
    if data_root:
        root = Path(data_root).resolve()
    elif root_text:
        root = (source_dir / os.path.expanduser(root_text)).resolve()
    elif synth is not None:
        root = Path(out or default_out(file)).resolve() / "data"
    else:
        root = source_dir.resolve()

    def resolve(text: str | None, base: Path = root) -> str | None:
        if text is None:
            return None
        text = os.path.expanduser(text)
        return str(Path(text) if os.path.isabs(text) else (base / text).resolve())

    weights = check.text("weights_dir", data.get("weights_dir"))
    weights_dir = Path(resolve(weights) if weights else root / "weights")

    # ---------------------------------------------------------------- training and validation
    train = check.mapping("train", data.get("train"))
    check.keys("train.", train, _TRAIN_KEYS)
    train_data = resolve(check.text("train.data", train.get("data")))
    val_split = train.get("val_split")
    if val_split is not None and (isinstance(val_split, bool) or not isinstance(val_split, (int, float))
                                  or not 0 < val_split < 1):
        check.add("train.val_split", f"expected a fraction above 0 and below 1 (0.1: a tenth of the training data "
                                     f"held out), found {_show(val_split)}")
        val_split = None
    val = resolve(check.text("train.val", train.get("val")))
    if train.get("val_split") is not None and train.get("val") is not None:
        check.add("train", "give one of val_split (hold out part of the training data) or val (a validation set), "
                           "not both")
    augmentation = train.get("augmentation", "default")
    if augmentation not in ("default", "none"):
        check.add("train.augmentation", f"expected default (IMDL-BenCo's training augmentation) or none, found "
                                        f"{_show(augmentation)}")
    train_options = _options(check, "train.options", train.get("options"), ("train",))
    options = _options(check, "options", data.get("options"), ("train", "test", "test_robust"))

    # ---------------------------------------------------------------- test sets
    test_sets: dict[str, str] = {}
    test_file: str | None = None
    test = data.get("test")
    if test is None:
        check.add("test", "is required: the test sets as {name: path} (or the path of a test_datasets.json)")
    elif isinstance(test, str):
        test_file = resolve(test)
    elif isinstance(test, dict) and test:
        for set_name, path in test.items():
            set_name = str(set_name)  # YAML reads `2020: ...` as a number
            key = f"test.{set_name}"
            if not _check_name(check, key, set_name, "test set"):
                continue
            text = check.text(key, path, required=True)
            if text:
                test_sets[set_name] = str(resolve(text))
    else:
        check.add("test", f"expected {{name: path}} or the path of a test_datasets.json, found {_show(test)}")

    # ---------------------------------------------------------------- robustness, metrics, input
    robustness: Robustness | None = None
    rob = data.get("robustness", "default")
    if rob in ("default", None):
        robustness = Robustness(None, None) if rob == "default" else None
    elif rob == "none" or rob is False:
        robustness = None
    elif isinstance(rob, dict):
        check.keys("robustness.", rob, ("sets", "attacks"))
        sets = rob.get("sets")
        if sets is not None and (not isinstance(sets, list) or not all(isinstance(s, str) for s in sets)):
            check.add("robustness.sets", f"expected a list of test set names, found {_show(sets)}")
            sets = None
        elif sets is not None and test_sets:
            for s in sets:
                if s not in test_sets:
                    check.add("robustness.sets", f"{s!r} is not a test set of this protocol ({', '.join(test_sets)})")
        robustness = Robustness(sets, _attacks(check, rob.get("attacks")))
    else:
        check.add("robustness", f"expected default, none, or {{sets: [...], attacks: {{...}}}}, found {_show(rob)}")
    metrics = _metrics(check, data.get("metrics"))
    input_rule = None
    if data.get("input", "recipe") != "recipe":
        input_rule = _input_rule(check, "input", data.get("input"))
    bootstrap = data.get("bootstrap")
    if bootstrap is not None:
        bootstrap = _int(check, "bootstrap", bootstrap, 0, 100_000)
        if bootstrap is not None and 0 < bootstrap < 10:
            check.add("bootstrap", "expected 0 (no intervals) or 10 to 100000 resamples")

    threads = data.get("threads")
    if threads is not None:
        threads = _int(check, "threads", threads, 1)

    # ---------------------------------------------------------------- models
    models: list[ModelEntry] = []
    entries = data.get("models")
    if not isinstance(entries, list) or not entries:
        check.add("models", f"expected a list of model entries ({{model: NAME, ...}}), found {_show(entries)}")
        entries = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        where = f"models[{i}]"
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict):
            check.add(where, f"expected a mapping with at least `model: NAME`, found {_show(entry)}")
            continue
        check.keys(f"{where}.", entry, _MODEL_KEYS)
        model = check.text(f"{where}.model", entry.get("model"), required=True)
        if model is None:
            continue
        ident = check.text(f"{where}.id", entry.get("id")) or model
        if not _check_name(check, f"{where}.id" if "id" in entry else f"{where}.model", ident, "model id"):
            continue
        if ident in seen:
            check.add(f"{where}.id", f"{ident!r} is also models[{seen[ident]}]'s id; give each entry its own `id`")
            continue
        seen[ident] = i
        imports = entry.get("import") or []
        if isinstance(imports, str):
            imports = [imports]
        if not isinstance(imports, list) or not all(isinstance(m, str) and re.match(r"^[A-Za-z_][\w.]*$", m)
                                                    for m in imports):
            check.add(f"{where}.import", f"expected a module name (mymodel) or a list of them, found "
                                         f"{_show(entry.get('import'))}")
            imports = []
        recipe = entry.get("recipe")
        if recipe is not None and not isinstance(recipe, bool):
            check.add(f"{where}.recipe", f"expected true (the zoo recipe's options) or false, found {_show(recipe)}")
            recipe = None
        ckpt = check.text(f"{where}.checkpoint", entry.get("checkpoint"))
        ckpt_path = resolve(ckpt, source_dir.resolve()) if ckpt else None
        model_input = _input_rule(check, f"{where}.input", entry["input"]) if entry.get("input") is not None else None
        for stage_key in ("train_options",) if ckpt else ():
            if entry.get(stage_key):
                check.add(f"{where}.{stage_key}", "a `checkpoint:` entry is not trained; remove it")
        models.append(ModelEntry(
            index=i, id=ident, model=model, imports=list(imports), recipe=recipe,
            options=_options(check, f"{where}.options", entry.get("options"), ("train", "test", "test_robust")),
            train_options=_options(check, f"{where}.train_options", entry.get("train_options"), ("train",)),
            test_options=_options(check, f"{where}.test_options", entry.get("test_options"), ("test", "test_robust")),
            checkpoint=ckpt_path, input=model_input))
    if any(m.checkpoint is None for m in models) and train.get("data") is None:
        check.add("train.data", "is required: a model entry without `checkpoint:` is trained on it (a dataset "
                                "folder, a JsonDataset or a BalancedDataset JSON, as train.py's --data_path)")
    if train_data is not None and val_split is None and val is None and any(m.checkpoint is None for m in models):
        check.add("train", "give val_split (a fraction of the training data held out) or val (a validation set): "
                           "benco bench chooses each checkpoint on validation, never on the test sets")
    if check.problems:
        count = len(check.problems)
        raise ProtocolError(f"{count} mistake{'s' if count > 1 else ''} in the protocol:\n  " +
                            "\n  ".join(check.problems))
    return Protocol(
        name=name, description=description, file=file, sha256=hashlib.sha256(raw).hexdigest(), shipped=shipped,
        data_root=root, synth=synth, weights_dir=weights_dir, train_data=train_data,
        val_split=float(val_split) if val_split is not None else None, val=val, augmentation=augmentation,
        options=options, train_options=train_options, test_sets=test_sets, test_file=test_file,
        robustness=robustness, metrics=metrics, input=input_rule, bootstrap=bootstrap, threads=threads, models=models,
        source_dir=source_dir)
