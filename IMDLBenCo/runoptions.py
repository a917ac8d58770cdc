"""Every option of the scripts, defined once.

Each :class:`Option` says its name, type, default, help, accepted range, the scripts that offer
it, and whether the report shows it. Everything else is derived from this table:

- the parsers of ``train.py``, ``test.py``, ``test_robust.py``, ``test_save_images.py`` and
  ``test_complexity.py`` (:func:`IMDLBenCo.engine.arguments.build_script_parser`);
- the range checks run before any work (:func:`check_value`, :data:`CROSS_CHECKS`);
- the typing of ``--config FILE.yaml`` values and of options read back from a checkpoint
  (:func:`typed_value`);
- the options of a training run that test scripts must not get (:func:`train_only`, used by
  ``benco init``), the switches (:func:`switches`, used by ``benco predict``), the report's key
  and ignored options (:func:`report_keys`, :func:`ignored_options`).

Adding an option is one entry in :data:`OPTIONS` (docs/ARCHITECTURE.md shows an example). This
module is standard library only: ``benco --help`` and the report import it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SCRIPTS", "Option", "OPTIONS", "GROUPS", "options_for", "option", "train_only", "switches", "report_keys",
    "ignored_options", "resume_sensitive", "volatile", "check_value", "typed_value", "CROSS_CHECKS", "cross_check",
    "CROSS_WARNINGS", "cross_warnings", "defaults", "names", "add_to",
    "OptionValueError", "MAX_SEED",
]

SCRIPTS = ("train", "test", "test_robust", "test_save_images", "test_complexity")
ALL = frozenset(SCRIPTS)
TRAIN = frozenset({"train"})
EVAL = frozenset({"test", "test_robust", "test_save_images"})
#: scripts that offer --sliding_window (inference on images of any size)
SLIDING = frozenset({"test", "test_save_images"})
#: scripts that write results.json
RESULTS = frozenset({"train", "test", "test_robust"})
#: the largest --seed: every seed derived from it (per rank and epoch) stays below 2**32 for NumPy
MAX_SEED = 2**32 - 1 - 10**6

#: the groups of ``--help``, in order
GROUPS = ("model", "input size", "data", "training", "evaluation", "run")


class OptionValueError(ValueError):
    """A value of the wrong type or out of range; the message names the option and what it accepts."""


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Option:
    """One option of one or more scripts.

    Attributes:
        name: the option (``--name``) and the attribute of the parsed namespace.
        type: ``int``, ``float``, ``str`` or ``bool`` (``bool``: an on/off switch, ``--name``).
        default: the default, or ``{script: default}`` where scripts differ.
        help: the help text, or ``{script: text}`` where scripts differ.
        scripts: the scripts that offer it.
        group: its ``--help`` group (:data:`GROUPS`).
        check: accepted values (called on a non-None value); None: any value of the type.
        accepted: the accepted range in words, for messages.
        choices: the accepted values, when they are a list.
        nullable: None is a value ("not given"; e.g. ``--lr`` falls back to ``--blr``).
        required: the scripts where it must be given.
        report: shown up front in the report's configuration table.
        ignored: accepted for IMDL-BenCo's launchers and not used (never shown as meaningful).
        resume_sensitive: a resumed run with another value behaves differently (warned about).
        volatile: does not change what a run computes (a rerun with another value is the same run).
        negative: the name of a second switch that sets it False (``--no_pin_mem``).
        metavar: shown in ``--help``.
    """

    name: str
    type: type
    default: Any = None
    help: str | Mapping[str, str] = ""
    scripts: frozenset[str] = ALL
    group: str = "run"
    check: Callable[[Any], bool] | None = None
    accepted: str = ""
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    required: frozenset[str] = frozenset()
    report: bool = False
    ignored: bool = False
    resume_sensitive: bool = False
    volatile: bool = False
    negative: str | None = None
    metavar: str | None = None

    def default_for(self, script: str) -> Any:
        return self.default.get(script) if isinstance(self.default, Mapping) else self.default

    def help_for(self, script: str) -> str:
        return self.help.get(script, "") if isinstance(self.help, Mapping) else self.help

    @property
    def switch(self) -> bool:
        return self.type is bool


_POSITIVE = (lambda v: v >= 1, "1 or more")
_IGNORED = "accepted for IMDL-BenCo launchers and ignored: torchrun's environment decides"
_OUTPUT = {"train": "./output_dir", "test": "./eval_dir", "test_robust": "./eval_robust_dir",
           "test_save_images": "./save_img_dir", "test_complexity": "./complexity_dir"}


def _o(name: str, type_: type, default: Any = None, help: str | Mapping[str, str] = "",
       rule: tuple[Callable[[Any], bool], str] | None = None, **kw: Any) -> Option:
    check, accepted = rule if rule else (None, "")
    return Option(name, type_, default, help, check=check, accepted=accepted, **kw)


OPTIONS: tuple[Option, ...] = (
    # ------------------------------------------------------------------ model
    _o("model", str, None, "registered model name (MODELS), e.g. MyModel", group="model", required=ALL,
       report=True),
    _o("if_predict_label", bool, False, "ask the model for an image-level label (passed to its __init__ if it has "
       "that parameter, and to forward() as if_predict_label)", group="model"),
    _o("no_model_eval", bool, False, "keep the model in train mode while testing (batch statistics; MVSS-Net does "
       "this)", group="model"),
    _o("label_from_mask", str, None, "give every image a pred_label read from pred_mask: its highest pixel (max) or "
       "the mean of its --label_topk highest pixels (topk), so image-level metrics exist for a localisation-only "
       "model (replaces a label the model gives)", group="model", choices=("max", "topk"), nullable=True),
    _o("label_topk", int, 100, "pixels averaged by --label_from_mask topk (default 100)", _POSITIVE, group="model"),
    # ------------------------------------------------------------------ input size
    _o("image_size", int, 512, "side S of the S×S network input (default 512)",
       (lambda v: v >= 1, "a positive number of pixels"), group="input size", report=True, resume_sensitive=True),
    _o("if_padding", bool, False, "zero-pad images to S×S at the top-left", group="input size", report=True,
       resume_sensitive=True),
    _o("if_resizing", bool, False, "resize images to S×S", group="input size", report=True, resume_sensitive=True),
    _o("edge_mask_width", int, None, "also give the model an edge_mask: the band around the mask's boundary, found "
       "with a cross kernel of this odd size at the image's resolution (IML-ViT and MVSS-Net use 7)",
       (lambda v: v >= 3 and v % 2 == 1, "an odd number of pixels >= 3 (7 is usual)"), nullable=True,
       group="input size", report=True, resume_sensitive=True),
    _o("sliding_window", bool, False, "keep each image at its own size and predict it with overlapping S×S tiles, "
       "blended (a smaller image is one zero-padded tile, as --if_padding); instead of --if_padding/--if_resizing",
       scripts=SLIDING, group="input size", report=True),
    _o("window_overlap", float, 0.25, "fraction of a tile shared with its neighbour in --sliding_window "
       "(default 0.25)", (lambda v: _finite(v) and 0 <= v < 1, "at least 0 and below 1 (0.25: a quarter of a tile)"),
       scripts=SLIDING, group="input size"),
    _o("max_pixels", int, 100_000_000, "largest image (width × height, read from the file's header before it is "
       "decoded) that is read; a larger one is refused with a message (default 100 M pixels, e.g. 10000×10000)",
       (lambda v: v >= 1, "a positive number of pixels"), group="input size"),
    # ------------------------------------------------------------------ data
    _o("data_path", str, None, "training set: ManiDataset folder, JsonDataset file or BalancedDataset JSON",
       scripts=TRAIN, group="data", required=TRAIN, report=True),
    _o("test_data_path", str, None, {
        "train": "test set(s): a ManiDataset folder, a JsonDataset file or a test_datasets.json",
        "test": "same as --test_data_json",
        "test_robust": "dataset (ManiDataset folder, JsonDataset file) or a test_datasets.json",
        "test_save_images": "dataset (ManiDataset folder, JsonDataset file; also a plain folder of images)",
        "test_complexity": "optional dataset whose first sample is measured (default: a synthetic one)"},
       group="data", report=True),
    _o("test_data_json", str, None, {
        "train": "same as --test_data_path (a test_datasets.json)",
        "test": "test_datasets.json ({name: path}) or a single dataset path",
        "test_robust": "same as --test_data_path", "test_save_images": "same as --test_data_path"},
       scripts=TRAIN | EVAL, group="data", report=True),
    _o("val_data_path", str, None, "validation set (ManiDataset folder or JsonDataset file): checkpoint-best.pth is "
       "chosen on it, and the test sets are tested once, on that checkpoint, at the end (results.json)",
       scripts=TRAIN, group="data", report=True),
    _o("val_split", float, None, "hold out this fraction of the training data (seeded by --seed; the list is written "
       "to val_split.json) as the validation set that chooses checkpoint-best.pth, as --val_data_path",
       (lambda v: _finite(v) and 0 < v < 1, "a fraction above 0 and below 1 (0.1: a tenth of the training data)"),
       scripts=TRAIN, group="data", nullable=True, report=True, resume_sensitive=True),
    _o("checkpoint_path", str, None, {
        "test": "folder of checkpoint-<epoch>.pth files (or one checkpoint file)",
        "test_robust": "one checkpoint file (.pth)", "test_save_images": "one checkpoint file (.pth)"},
       scripts=EVAL, group="data", required=EVAL, report=True),
    # ------------------------------------------------------------------ training
    _o("batch_size", int, 1, "samples per rank per step (default 1)", _POSITIVE, scripts=TRAIN, group="training",
       report=True, resume_sensitive=True),
    _o("test_batch_size", int, {"test_complexity": 1, **{s: 2 for s in SCRIPTS if s != "test_complexity"}},
       "samples per rank per test step", _POSITIVE, group="training", report=True),
    _o("epochs", int, 200, "number of epochs (counted from 0)", _POSITIVE, scripts=TRAIN, group="training",
       report=True),
    _o("start_epoch", int, 0, "first epoch (set by --resume)", (lambda v: v >= 0, "0 or more"), scripts=TRAIN,
       group="training", volatile=True),
    _o("lr", float, None, "learning rate; default --blr × effective batch / 256",
       (lambda v: _finite(v) and v > 0, "a positive finite number (or leave it out to use --blr)"), scripts=TRAIN,
       group="training", nullable=True, report=True, resume_sensitive=True),
    _o("blr", float, 1e-3, "base learning rate for an effective batch of 256",
       (lambda v: _finite(v) and v > 0, "a positive finite number"), scripts=TRAIN, group="training", report=True,
       resume_sensitive=True),
    _o("min_lr", float, 0.0, "floor of the cosine schedule", (lambda v: _finite(v) and v >= 0,
       "0 or a positive finite number"), scripts=TRAIN, group="training", report=True),
    _o("weight_decay", float, 0.05, "AdamW weight decay (not on norms/biases)",
       (lambda v: _finite(v) and v >= 0, "0 or a positive finite number"), scripts=TRAIN, group="training",
       report=True, resume_sensitive=True),
    _o("warmup_epochs", float, 4, "linear warm-up length in epochs (below --epochs)",
       (lambda v: _finite(v) and v >= 0, "0 or a positive finite number of epochs"), scripts=TRAIN,
       group="training", report=True),
    _o("accum_iter", int, 16, "steps of gradient accumulation per update", _POSITIVE, scripts=TRAIN,
       group="training", report=True, resume_sensitive=True),
    _o("clip_grad", float, None, "clip the gradient norm to this value",
       (lambda v: _finite(v) and v > 0, "a positive finite gradient norm (leave it out for no clipping)"),
       scripts=TRAIN, group="training", nullable=True),
    _o("test_period", int, 4, "test every N epochs (and after the last)", _POSITIVE, scripts=TRAIN,
       group="training", report=True),
    _o("save_period", int, 0, "write checkpoint-<epoch>.pth every N epochs; 0 (default): on test epochs. The last "
       "epoch is always written", (lambda v: v >= 0, "0 (on test epochs) or a positive number of epochs"),
       scripts=TRAIN, group="training"),
    _o("best_metric", str, None, "metric (mean over the validation or test sets) that picks checkpoint-best.pth; "
       "default: the first metric of the first evaluator (IMDL-BenCo's keys such as 'pixel-level F1' are "
       "accepted)", scripts=TRAIN, group="training", nullable=True),
    _o("best_metric_mode", str, "max", "max or min", scripts=TRAIN, group="training", choices=("max", "min")),
    _o("log_per_epoch_count", int, 20, "logged steps per epoch", _POSITIVE, scripts=TRAIN, group="training"),
    _o("resume", str, "", "checkpoint to continue from ('auto': newest in --output_dir)", scripts=TRAIN,
       group="training", volatile=True),
    _o("find_unused_parameters", bool, False, "DDP find_unused_parameters", scripts=TRAIN, group="training"),
    _o("skip_nonfinite_loss", bool, False, "skip a step whose loss is NaN/inf instead of stopping the run",
       scripts=TRAIN, group="training"),
    _o("save_optimizer", bool, True, "keep the optimizer state in checkpoint-resume.pth so --resume continues "
       "exactly (--no_save_optimizer: a quick throw-away run writes the model only, a fraction of the disk)",
       scripts=TRAIN, group="training", negative="no_save_optimizer"),
    # ------------------------------------------------------------------ evaluation
    _o("bootstrap", int, 1000, "bootstrap resamples of the test images for the 95 % intervals in results.json "
       "(seeded by --seed; 0 turns intervals off)", (lambda v: v == 0 or 10 <= v <= 100_000,
       "0 (no intervals) or 10 to 100000 resamples"), scripts=RESULTS, group="evaluation"),
    # ------------------------------------------------------------------ run
    _o("config", str, None, "read options (the script's and the model's, e.g. 'lr: 1e-4', 'model: IML_ViT') from a "
       "YAML or JSON file; flags on the command line override it; config.json records the result",
       metavar="FILE.yaml", volatile=True),
    _o("output_dir", str, _OUTPUT, {s: f"folder for results (default {d})" for s, d in _OUTPUT.items()},
       report=True, volatile=True),
    _o("log_dir", str, None, "TensorBoard folder (default: --output_dir)", volatile=True),
    _o("overwrite", bool, False, "replace the run already in --output_dir (its result files and checkpoints are "
       "removed first); without it a folder holding another run is refused", volatile=True),
    _o("device", str, "auto", "auto (CUDA if available, else CPU), cpu, cuda, cuda:N, mps", volatile=True),
    _o("num_workers", int, 1, "data loader worker processes per rank", (lambda v: v >= 0,
       "0 (load in the main process) or more"), volatile=True),
    _o("skip_data_check", bool, False, "do not check the datasets' files (existence, format, image/mask sizes) "
       "before the run", volatile=True),
    _o("seed", int, 42, "random seed (each rank adds its rank)",
       (lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"), report=True, resume_sensitive=True),
    _o("pin_mem", bool, True, "pin loader memory (CUDA only; default on)", negative="no_pin_mem", volatile=True),
    _o("if_not_amp", bool, False, "turn automatic mixed precision off (AMP is used on CUDA only)"),
    _o("amp_dtype", str, "float16", "precision of AMP on CUDA: float16 (IMDL-BenCo's; with a gradient scaler) or "
       "bfloat16 (Ampere and later; no scaler needed)", choices=("float16", "bfloat16")),
    _o("world_size", int, 1, _IGNORED, ignored=True),
    _o("local_rank", int, -1, _IGNORED, ignored=True),
    _o("dist_url", str, "env://", _IGNORED, ignored=True),
    _o("dist_on_itp", bool, False, _IGNORED, ignored=True),
)

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The option ``name`` (KeyError when there is none)."""
    return _BY_NAME[name]


def options_for(script: str) -> list[Option]:
    """The options ``script`` offers, in table order."""
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; expected one of {SCRIPTS}")
    return [o for o in OPTIONS if script in o.scripts]


def train_only() -> frozenset[str]:
    """Options of ``train.py`` that no test script takes (``benco init`` leaves them out of test launchers)."""
    return frozenset(o.name for o in OPTIONS if o.scripts == TRAIN) | {"if_not_amp"}


def switches() -> frozenset[str]:
    """``--name`` of every on/off switch (they take no value on the command line)."""
    out = {f"--{o.name}" for o in OPTIONS if o.switch}
    return frozenset(out | {f"--{o.negative}" for o in OPTIONS if o.negative})


def report_keys() -> tuple[str, ...]:
    return tuple(o.name for o in OPTIONS if o.report)


def ignored_options() -> tuple[str, ...]:
    return tuple(o.name for o in OPTIONS if o.ignored)


def volatile() -> frozenset[str]:
    """Options that do not change what a run computes (and the ignored ones)."""
    return frozenset(o.name for o in OPTIONS if o.volatile or o.ignored)


def resume_sensitive() -> tuple[str, ...]:
    return tuple(o.name for o in OPTIONS if o.resume_sensitive)


def _type_word(opt: Option) -> str:
    word = {int: "an integer", float: "a number", str: "a text", bool: "true or false"}[opt.type]
    return word + (" (or null)" if opt.nullable else "")


def typed_value(opt: Option, value: Any, where: str) -> Any:
    """``value`` (from a YAML/JSON file or a checkpoint) as ``opt``'s type, or OptionValueError.

    Strict: an integer option refuses 1.7, true and lists; a number accepts integers; a text
    refuses numbers, lists and mappings; null only where the option has no value by default.
    Strings are converted as on the command line (``"3"`` for an integer).
    """
    name = f"{where}{opt.name!r}"
    if value is None:
        if opt.nullable or opt.default is None:
            return None
        raise OptionValueError(f"{name}: null is not a value of this option; give {_type_word(opt)} or leave it out")
    if opt.type is bool:
        if isinstance(value, bool):
            return value
        raise OptionValueError(f"{name} is an on/off switch; give true or false, not {value!r}")
    if isinstance(value, bool) or isinstance(value, (list, tuple, dict, set)):
        raise OptionValueError(f"{name}: expected {_type_word(opt)}, got {type(value).__name__} {_short(value)}")
    if opt.type is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise OptionValueError(f"{name}: expected an integer, got {value!r}")
            value = int(value)
        elif isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise OptionValueError(f"{name}: expected an integer, got {value!r}") from None
        elif not isinstance(value, int):
            raise OptionValueError(f"{name}: expected an integer, got {type(value).__name__}")
    elif opt.type is float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise OptionValueError(f"{name}: expected a number, got {value!r}") from None
        elif isinstance(value, (int, float)):
            value = float(value)
        else:
            raise OptionValueError(f"{name}: expected a number, got {type(value).__name__}")
    elif opt.type is str:
        if not isinstance(value, str):
            raise OptionValueError(f"{name}: expected {_type_word(opt)}, got {type(value).__name__} {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(opt: Option, value: Any) -> str | None:
    """None when ``value`` is accepted, else the message (naming ``--name``, the value, the range)."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value) and opt.type in (int, float):
        return f"--{opt.name} {value}: must be {opt.accepted or 'a finite number'}"
    if opt.choices is not None and value not in opt.choices:
        return f"--{opt.name} {value}: must be one of {', '.join(map(str, opt.choices))}"
    if opt.check is not None and not opt.check(value):
        return f"--{opt.name} {value}: must be {opt.accepted}"
    return None


def _cross_min_lr(script: str, v: Mapping[str, Any]) -> str | None:
    if v.get("lr") is not None and v.get("min_lr", 0) > v["lr"]:
        return (f"--min_lr {v['min_lr']} is above --lr {v['lr']}: the schedule would raise the learning rate while "
                f"it should decay; give --min_lr at most --lr")
    return None


def _cross_warmup(script: str, v: Mapping[str, Any]) -> str | None:
    if v.get("warmup_epochs", 0) > 0 and v["warmup_epochs"] >= v.get("epochs", math.inf):
        return (f"--warmup_epochs {v['warmup_epochs']:g} with --epochs {v['epochs']}: the learning rate would never "
                f"reach its value (the warm-up outlasts the run); give fewer warm-up epochs than --epochs "
                f"(or --warmup_epochs 0) to train at the learning rate you chose")
    return None


def _cross_start(script: str, v: Mapping[str, Any]) -> str | None:
    if v.get("start_epoch", 0) >= v.get("epochs", math.inf):
        return (f"--start_epoch {v['start_epoch']} with --epochs {v['epochs']}: nothing would be trained (epochs "
                f"run from --start_epoch to --epochs - 1); raise --epochs")
    return None


def _cross_validation(script: str, v: Mapping[str, Any]) -> str | None:
    if v.get("val_split") is not None and v.get("val_data_path"):
        return "give one of --val_split (hold out part of the training data) or --val_data_path, not both"
    return None


def _cross_size(script: str, v: Mapping[str, Any]) -> str | None:
    chosen = int(bool(v.get("if_padding"))) + int(bool(v.get("if_resizing"))) + int(bool(v.get("sliding_window")))
    if chosen != 1:
        if script in SLIDING:
            return ("give exactly one of --if_padding (zero-pad to S×S), --if_resizing (resize to S×S) or "
                    "--sliding_window (S×S tiles over the image at its own size)")
        return "give exactly one of --if_padding (zero-pad to S×S) or --if_resizing (resize to S×S)"
    return None


#: checks of several options together, run after the single-option checks (errors)
CROSS_CHECKS: tuple[Callable[[str, Mapping[str, Any]], str | None], ...] = (
    _cross_size, _cross_min_lr, _cross_start, _cross_validation)
#: combinations that work but rarely do what was meant (logged as warnings when the run starts)
CROSS_WARNINGS: tuple[Callable[[str, Mapping[str, Any]], str | None], ...] = (_cross_warmup,)


def cross_check(script: str, values: Mapping[str, Any]) -> str | None:
    """The first message of :data:`CROSS_CHECKS` for ``values`` (a namespace's ``vars``), else None."""
    for check in CROSS_CHECKS:
        message = check(script, values)
        if message:
            return message
    return None


def cross_warnings(script: str, values: Mapping[str, Any]) -> list[str]:
    """The messages of :data:`CROSS_WARNINGS` for ``values``."""
    return [m for m in (w(script, values) for w in CROSS_WARNINGS) if m]


def add_to(parser: Any, name: str, **overrides: Any) -> Any:
    """Add option ``name`` of the table to another command's ``parser`` (``benco demo --seed``),
    with ``overrides`` (e.g. ``default``, ``help``) for what differs there; typed and checked
    by the table's rule."""
    opt = _BY_NAME[name]

    def convert(text: str) -> Any:
        import argparse

        value = typed_value(opt, text, "--")
        problem = check_value(opt, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    kwargs: dict[str, Any] = {"default": opt.default_for("train"), "help": opt.help_for("train"),
                              "type": convert, "choices": opt.choices}
    kwargs.update(overrides)
    kwargs["help"] = str(kwargs["help"]).replace("%", "%%")
    return parser.add_argument(f"--{name}", **kwargs)


def defaults(script: str) -> dict[str, Any]:
    """``{name: default}`` of ``script``'s options."""
    return {o.name: o.default_for(script) for o in options_for(script)}


def names(scripts: Sequence[str] = SCRIPTS) -> frozenset[str]:
    """Every option name of ``scripts``."""
    return frozenset(o.name for o in OPTIONS if o.scripts & set(scripts))

