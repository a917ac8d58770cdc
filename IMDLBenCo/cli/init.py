"""``benco init [base|model_zoo|backbone]``: write a project's scripts into the current folder.

``base`` writes ``mymodel.py``, the six scripts (IMDL-BenCo's five and ``test_cam.py``), their ``.sh``
launchers, the dataset JSON samples and a README. ``model_zoo`` / ``backbone`` write the six
scripts plus ``runs/``, one
train / test / robustness / save-images launcher per entry of every ``recipe.json`` of the zoo
(``IMDLBenCo/model_zoo/*/recipe.json``) or of the backbones
(``IMDLBenCo/modules/backbones/recipe.json``); ``benco init model_zoo Trufor`` writes only the
named models' launchers. An existing file is never overwritten without asking (y / n / all /
none); ``--yes`` and ``--skip-existing`` answer for scripts and CI.

Every launcher says where its results are when it succeeds and shows the end of its error log
when it fails. A recipe's ``nproc_per_node`` (one process per GPU in the published setting) is
an upper bound: the launcher starts one process per GPU present, at most that many, and one on a
machine without GPU (``NPROC=N sh runs/...`` chooses).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .. import runoptions

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates" / "base"

SCRIPTS = ["train.py", "test.py", "test_robust.py", "test_save_images.py", "test_complexity.py", "test_cam.py"]
DATASET_FILES = ["balanced_dataset.json", "test_datasets.json"]
BASE_FILES = ["mymodel.py", *SCRIPTS, "train_mymodel.sh", "test_mymodel.sh", "test_robust_mymodel.sh",
              "test_save_image_mymodel.sh", "test_complexity_mymodel.sh", "test_cam_mymodel.sh", *DATASET_FILES,
              "README-IMDLBenCo.md"]

IMPORT_LINE = "from mymodel import MyModel  # noqa: F401  TODO: import your model here; the import registers it for --model"
#: test_save_images.py, test_complexity.py and test_cam.py import the module, not a class: the tutorial
#: renames the class and edits only train.py, test.py and test_robust.py, and these must keep working
MODULE_IMPORT_LINE = ("import mymodel  # noqa: F401  TODO: the module that defines your model (importing it "
                      "registers every model in it for --model)")
ZOO_IMPORT_LINE = ("# from mymodel import MyModel  # TODO: import your own model here; zoo models and backbones "
                   "need no import")

#: script options that are on/off flags: ``true`` writes the flag, ``false`` leaves it out; and the
#: options of the training run that test scripts must not receive (both from the option table)
SCRIPT_FLAGS = {flag[2:] for flag in runoptions.switches()}
TRAIN_ONLY = runoptions.train_only()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "init", help="write the scripts of a new project into the current folder",
        description="Write the scripts of an IMDLBenCo project into the current folder. "
                    "base: your own model (mymodel.py + scripts); model_zoo / backbone: run scripts for "
                    "the built-in models.",
    )
    p.add_argument("kind", nargs="?", default="base", choices=["base", "model_zoo", "backbone"],
                   help="what to write (default: base)")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="model_zoo / backbone: write the launchers of these models only (e.g. Trufor); "
                        "default: every model")
    answer = p.add_mutually_exclusive_group()
    answer.add_argument("-y", "--yes", action="store_true", help="overwrite existing files without asking")
    answer.add_argument("--skip-existing", action="store_true",
                        help="keep every existing file, write only the missing ones (no questions)")
    p.set_defaults(run=run)


class Writer:
    """Writes files into ``root``, asking before it replaces one (y / n / all / none)."""

    def __init__(self, root: Path, overwrite: bool | None) -> None:
        self.root = root
        self.decision = {True: "all", False: "none", None: None}[overwrite]
        self.written: list[str] = []
        self.skipped: list[str] = []

    def _may_write(self, rel: str) -> bool:
        if self.decision == "all":
            return True
        if self.decision == "none":
            return False
        while True:
            try:
                reply = input(f"  {rel} already exists. Overwrite it? (y/n/all/none): ").strip().lower()
            except EOFError:
                print()
                print("  no answer can be read (no terminal); keeping this and every other existing file. "
                      "Use --yes to overwrite or --skip-existing to keep them without a question.")
                self.decision = "none"
                return False
            if reply in ("y", "yes"):
                return True
            if reply in ("n", "no", ""):
                return False
            if reply in ("all", "a"):
                self.decision = "all"
                return True
            if reply in ("none",):
                self.decision = "none"
                return False
            print("  please answer y, n, all or none")

    def write(self, rel: str, text: str, executable: bool = False) -> None:
        target = self.root / rel
        if target.exists() and not self._may_write(rel):
            print(f"  kept     {rel}")
            self.skipped.append(rel)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        target.write_text(text, encoding="utf-8")
        if executable:
            target.chmod(target.stat().st_mode | 0o111)
        print(f"  {'replaced' if existed else 'wrote   '} {rel}")
        self.written.append(rel)


def template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def script_text(name: str, with_model_import: bool) -> str:
    text = template(name)
    if not with_model_import:
        text = text.replace(IMPORT_LINE, ZOO_IMPORT_LINE).replace(MODULE_IMPORT_LINE, ZOO_IMPORT_LINE)
    return text


#: what each launcher does, for its failure message
_STAGE_WORDS = {"train": "training", "test": "testing", "test_robust": "the robustness test",
                "save_images": "saving the predictions"}
#: what each launcher leaves in its folder, for its success message
_STAGE_RESULTS = {
    "train": "checkpoint-<epoch>.pth, checkpoint-best.pth, log.txt (one line per epoch) and TensorBoard files",
    "test": "summary.json, summary.csv and log.txt (every checkpoint x every test set)",
    "test_robust": "robustness.json (every attack and strength)",
    "save_images": "pred/<name>.png (masks at the original size), pred_label.json and predictions.json",
}


def failure_epilogue(launcher: str, what: str, results: str = "") -> list[str]:
    """Shell lines after a launcher's command: on failure say so and show the end of error.log
    (all output goes to log files, so a failed run would otherwise return silently); on success
    say where the results are."""
    lines = [
        "status=$?",
        "if [ $status -ne 0 ]; then",
        f'    echo "{launcher}: {what} failed (exit status $status). The last lines of ${{base_dir}}/error.log:" >&2',
        # the script's own message, not the traceback torchrun appends after it
        '    { sed "/failed (exitcode: /,\\$d" "${base_dir}/error.log" | grep . || cat "${base_dir}/error.log"; } '
        '| tail -n 25 >&2',
        '    echo "(full output: ${base_dir}/logs.log and ${base_dir}/error.log)" >&2',
    ]
    if results:
        lines += ["else",
                  f'    echo "{launcher}: {what} finished. Results in ${{base_dir}}/: {results}; console output in '
                  '${base_dir}/logs.log"']
    return lines + ["fi", "exit $status"]


def process_count_lines(nproc: int) -> list[str]:
    """Shell lines setting ``nproc``: one process per GPU present, at most the recipe's ``nproc``,
    one without a GPU; ``NPROC`` in the environment decides instead. (A recipe's count is the
    published setting, one process per GPU: started as it is on a 2-core machine without GPU it
    ran 4 copies of the model on 2 cores.)"""
    probe = f"import torch; print(max(1, min({nproc}, torch.cuda.device_count())))"
    return [f"# processes: one per GPU, at most {nproc} (the recipe's setting; its batch size is per process),",
            "# one without a GPU; NPROC=N sh <this file> chooses",
            f'nproc="${{NPROC:-$(python -c "{probe}" 2>/dev/null || echo 1)}}"']


# ---------------------------------------------------------------------------------- recipes
def select_recipes(recipes: list[tuple[Path, dict[str, Any]]], names: list[str],
                   kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """The recipes of the models named in ``names`` (any case), in the order given; all of them
    when ``names`` is empty. An unknown name is an error that lists the known ones."""
    if not names:
        return recipes
    by_name = {recipe["model"].lower(): (source, recipe) for source, recipe in recipes}
    chosen, unknown = [], []
    for name in names:
        found = by_name.get(name.lower())
        if found is None:
            unknown.append(name)
        elif found not in chosen:
            chosen.append(found)
    if unknown:
        import difflib

        known = sorted(recipe["model"] for _, recipe in recipes)
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name.lower(), list(by_name), n=1, cutoff=0.5)
            hints.append(f"{name!r}" + (f" (did you mean {by_name[close[0]][1]['model']}?)" if close else ""))
        raise InitError(f"benco init {kind}: no recipe for {', '.join(hints)}; the {kind} recipes are: "
                        f"{', '.join(known) or 'none'}")
    return chosen


class InitError(Exception):
    """A mistake in the ``benco init`` command line (one message, exit status 2)."""


def find_recipes(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """``[(file, recipe)]`` for ``model_zoo`` or ``backbone``; files that do not parse are reported."""
    if kind == "model_zoo":
        files = sorted((PACKAGE / "model_zoo").glob("*/recipe.json"))
    else:
        files = sorted((PACKAGE / "modules" / "backbones").glob("recipe*.json"))
    recipes: list[tuple[Path, dict[str, Any]]] = []
    for file in files:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            print(f"  warning: skipping {file}: {err}", file=sys.stderr)
            continue
        for entry in data if isinstance(data, list) else [data]:
            if isinstance(entry, dict) and isinstance(entry.get("model"), str):
                recipes.append((file, entry))
            else:
                print(f"  warning: {file}: an entry without a \"model\" name was skipped", file=sys.stderr)
    return recipes


def option_lines(options: dict[str, Any]) -> list[str]:
    """``--name value`` lines for a recipe's options (flags only when true)."""
    lines = []
    for key, value in options.items():
        if key in SCRIPT_FLAGS:
            if value:
                lines.append(f"--{key}")
        elif isinstance(value, bool):
            lines.append(f"--{key} {'true' if value else 'false'}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"--{key} " + " ".join(shlex.quote(str(v)) for v in value))
        elif value is not None:
            lines.append(f"--{key} {shlex.quote(str(value))}")
    return lines


def run_script(recipe: dict[str, Any], source: Path, stage: str) -> str:
    """A torchrun launcher for ``stage`` (train, test, test_robust, save_images) of one recipe."""
    model = recipe["model"]
    train = dict(recipe.get("train") or {})
    test = dict(recipe.get("test") or {k: v for k, v in train.items() if k not in TRAIN_ONLY})
    nproc = int(recipe.get("nproc_per_node", 1) or 1)
    script, base_dir, data, options = {
        "train": ("train.py", f"./output_dir_{model}",
                  {"data_path": "/path/to/train_dataset", "test_data_path": "./test_datasets.json"}, train),
        "test": ("test.py", f"./eval_dir_{model}",
                 {"test_data_json": "./test_datasets.json", "checkpoint_path": f"./output_dir_{model}/"}, test),
        "test_robust": ("test_robust.py", f"./eval_robust_dir_{model}",
                        {"test_data_path": "/path/to/test_dataset",
                         "checkpoint_path": f"./output_dir_{model}/checkpoint-best.pth"}, test),
        "save_images": ("test_save_images.py", f"./save_img_dir_{model}",
                        {"test_data_path": "/path/to/images_or_dataset",
                         "checkpoint_path": f"./output_dir_{model}/checkpoint-best.pth"}, test),
    }[stage]
    # the recipe's own paths replace the placeholders (one --data_path, not two)
    data = {key: options.get(key, value) for key, value in data.items()}
    options = {k: v for k, v in options.items() if k not in data}
    try:
        where = source.relative_to(PACKAGE.parent)
    except ValueError:
        where = source
    launcher = f"{'save_images' if stage == 'save_images' else stage}_{model}.sh"
    head = [f"# {stage.replace('_', ' ')} {model} with its recommended settings (from {where}).",
            "# Run from the project folder:  sh runs/<this file>. Edit the dataset paths first.",
            "# Console output goes to ${base_dir}/logs.log and error.log; a failure shows the end of error.log."]
    weights = recipe.get("weights") or {}
    if weights and stage == "train":
        head.append(f"# Weights: {weights.get('option', '')} {weights.get('file', '')} "
                    f"(download from {weights.get('source', 'the model README')}; nothing is downloaded at run time)")
    body = [f"--model {model}", *(f'--{k} "{v}"' for k, v in data.items()), *option_lines(options),
            "--output_dir ${base_dir}/", "--log_dir ${base_dir}/"]
    count = process_count_lines(nproc) if nproc > 1 else ["nproc=1"]
    lines = head + ["", f'base_dir="{base_dir}"', "mkdir -p ${base_dir}", *count, "",
                    "torchrun \\", "    --standalone \\", "    --nnodes=1 \\", "    --nproc_per_node=${nproc} \\",
                    f"./{script} \\"]
    lines += [f"    {line} \\" for line in body]
    lines.append("2> ${base_dir}/error.log 1>${base_dir}/logs.log")
    lines += failure_epilogue(launcher, _STAGE_WORDS[stage], _STAGE_RESULTS[stage])
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    root = Path(os.getcwd())
    overwrite = True if args.yes else (False if args.skip_existing else None)
    names = list(getattr(args, "models", None) or [])
    try:
        if names and args.kind == "base":
            raise InitError(f"benco init base writes your own project and takes no model names ({' '.join(names)}); "
                            f"for a zoo model's launchers: benco init model_zoo {' '.join(names)}")
        recipes = select_recipes(find_recipes(args.kind), names, args.kind) if args.kind != "base" else []
    except InitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    writer = Writer(root, overwrite)
    print(f"Initializing in current working directory {root} ...")
    if args.kind == "base":
        for name in BASE_FILES:
            writer.write(name, template(name), executable=name.endswith(".sh"))
    else:
        for name in SCRIPTS:
            writer.write(name, script_text(name, with_model_import=False))
        for name in DATASET_FILES:
            writer.write(name, template(name))
        zoo_readme = (TEMPLATES.parent / "zoo" / "README-IMDLBenCo.md").read_text(encoding="utf-8")
        writer.write("README-IMDLBenCo.md", zoo_readme)
        if not recipes:
            where = "IMDLBenCo/model_zoo/*/recipe.json" if args.kind == "model_zoo" else \
                "IMDLBenCo/modules/backbones/recipe.json"
            print(f"  note: no recipe found ({where}); no run scripts written")
        for source, recipe in recipes:
            for stage, prefix in (("train", "train"), ("test", "test"), ("test_robust", "test_robust"),
                                  ("save_images", "save_images")):
                writer.write(f"runs/{prefix}_{recipe['model']}.sh", run_script(recipe, source, stage), executable=True)
    print(f"Successfully initialized IMDLBenCo scripts: {len(writer.written)} file(s) written, "
          f"{len(writer.skipped)} kept.")
    return 0

