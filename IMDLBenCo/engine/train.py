"""``train.py``: the training loop, periodic testing, checkpoints and logs.

Epochs count from 0, as in IMDL-BenCo (``checkpoint-0.pth`` is written after the first one).

Checkpoint files and the order they are written in at the end of epoch ``e`` (each write is
atomic: a temporary file renamed over the target, see :mod:`IMDLBenCo.engine.fileio`):

1. ``checkpoint-<e>.pth`` on save epochs (``--save_period``; by default the test epochs and the
   last): the model and the run's metadata, what ``test.py`` needs;
2. ``checkpoint-resume.pth`` every epoch: the full state (model, optimizer, AMP scaler, schedule
   position, best so far, this epoch's training statistics, whether its test is still to run),
   what resuming needs; it replaces the previous epoch's, so only one full state is on disk;
3. the test pass (test epochs), then the epoch's line in ``log.txt``;
4. ``checkpoint-best.pth`` when the test improved the best metric: a hard link to
   ``checkpoint-<e>.pth`` (no extra disk) or, without one, the model and metadata.

A finished epoch is never lost: its weights are on disk before its test runs, so an error found
while testing (or a kill) leaves them. The consistency rule, checked by ``--resume``: ``log.txt``
is the record of what was tested. Resuming from ``checkpoint-resume.pth`` of epoch ``e`` runs
epoch ``e``'s test first when its line is missing from ``log.txt``, recomputes the best epoch
from the logged test metrics of epochs ``<= e``, and makes ``checkpoint-best.pth`` hold that
epoch (from ``checkpoint-<best>.pth``, or the resumed model when the best is ``e``; a best file
from a later epoch than ``e`` is removed). So a kill at any moment, during any of the writes,
resumes to the same files as a run that was never interrupted.

Reproducible resume: at the start of every epoch the random state of each rank (Python, NumPy,
torch; the loader's shuffling, its workers' augmentation seeds, a BalancedDataset's draw) is set
from ``(--seed, epoch, rank)``. Epoch ``e`` therefore draws the same numbers whether the run got
there without stopping or was resumed from ``checkpoint-<e-1>.pth``; together with the restored
model, optimizer, AMP scaler and schedule position it repeats exactly (on the same hardware).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .. import runfolder, runoptions
from ..errors import NonFiniteLossError, UsageError
from ..outputs import check_model_output
from .builders import (
    autocast,
    batch_to_device,
    build_dataset,
    eval_loader,
    forward,
    start_epoch,
    test_set_paths,
    train_loader,
)
from .checkpoint import (
    checkpoint_epoch,
    latest_checkpoint,
    load_checkpoint,
    model_checkpoint_state,
    plain,
    read_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from .config import TrainConfig
from .evaluate import (
    default_evaluators,
    evaluate,
    flat_test_record,
    mean_over_sets,
    measure,
    metric_definitions,
    progress,
)
from .fileio import link_or_copy, remove_stale_temporaries
from .runtime import seed_everything
from .schedule import WarmupCosineSchedule, param_groups, resolve_lr
from .session import Session, open_session

logger = logging.getLogger("IMDLBenCo.engine")

#: the full training state (model, optimizer, scaler, schedule, best, epoch statistics)
RESUME_NAME = runfolder.RESUME_CHECKPOINT
#: the model of the epoch with the best test metric
BEST_NAME = runfolder.BEST_CHECKPOINT


def train_main(argv: Sequence[str] | None = None, *, evaluators: Sequence[Any] | None = None,
               train_transform: Any = None) -> dict[str, Any]:
    """Run ``train.py`` with ``argv`` (default: the command line); return the final metrics.

    ``evaluators``: metric objects for the test sets (default ``[PixelF1()]``).
    ``train_transform``: augmentation callable ``t(image=, mask=) -> dict`` (default: the IMDL
    training augmentations, ``IMDLBenCo.transforms.default_train_transform()``; pass ``False``
    for none). Returns the last ``log.txt`` record plus ``"best"`` (metric, value, epoch) and
    ``"output_dir"``.
    """
    with open_session("train", argv, train=True, write_config=False) as session:
        return Trainer(session, evaluators, train_transform).run()


def _metric_name(metric: str | None) -> str | None:
    """``--best_metric`` in our key form (IMDL-BenCo's ``pixel-level F1`` is ``pixel_f1``)."""
    from ..evaluation.reference_names import our_name

    return None if metric is None else our_name(metric)


def _default_transform(train_transform: Any) -> Any:
    if train_transform is None:
        from ..transforms import default_train_transform

        return default_train_transform()
    if train_transform is False:
        return None
    return train_transform


class Trainer:
    """State of one training run; :meth:`run` does the epochs."""

    def __init__(self, session: Session, evaluators: Sequence[Any] | None, train_transform: Any) -> None:
        s = self.session = session
        self.args, self.model_kwargs, self.runtime = s.args, s.model_kwargs, s.runtime
        self.cfg = cfg = TrainConfig.from_args(s.args)
        runtime = self.runtime
        self.data, self.call, self.writer, self.model = s.data, s.call, s.writer, s.model
        if runtime.is_main:
            remove_stale_temporaries(cfg.output_dir)
        train_path, val_path, self.validation = self._validation_split()
        self.train_set = build_dataset(train_path, self.data, _default_transform(train_transform), s.post_func)
        self.loader = train_loader(self.train_set, cfg.batch_size, self.data, runtime)
        if len(self.loader) == 0:
            raise UsageError(f"--data_path {cfg.data_path}: the training set is empty")
        self._check_batch_size()
        #: the sets tested during training (the validation set when there is one) and at the end
        self.test_paths = dict(test_set_paths(cfg.test_data_path)) if cfg.test_data_path else {}
        self.val_loaders: dict[str, Any] = {}
        if val_path is not None:
            self.val_set = build_dataset(val_path, self.data, None, s.post_func)
            self.val_loaders["validation"] = eval_loader(self.val_set, cfg.test_batch_size, self.data, runtime)
        self.test_loaders = {}
        for name, path in self.test_paths.items():
            dataset = build_dataset(path, self.data, None, s.post_func)
            self.test_loaders[name] = eval_loader(dataset, cfg.test_batch_size, self.data, runtime)
        self.select_on = "validation" if self.val_loaders else ("test_sets" if self.test_loaders else None)
        if evaluators is not None:
            self.evaluators = list(evaluators)
        else:
            self.evaluators = default_evaluators() if self.select_on else []

        self.lr = resolve_lr(cfg.lr, cfg.blr, cfg.batch_size, cfg.accum_iter, runtime.world_size)
        if cfg.min_lr > self.lr:
            raise UsageError(f"--min_lr {cfg.min_lr} is above the learning rate {self.lr:.3g} (from --blr {cfg.blr} "
                             f"x effective batch / 256): the schedule would raise it while it should decay; "
                             f"lower --min_lr or give --lr")
        self.optimizer = torch.optim.AdamW(param_groups(unwrap_model(self.model), self.cfg.weight_decay),
                                           lr=self.lr, betas=(0.9, 0.999))
        self.scheduler = WarmupCosineSchedule(self.optimizer, self.lr, cfg.min_lr, cfg.warmup_epochs, cfg.epochs)
        self.use_amp = runtime.is_cuda and self.call.use_amp
        # float16 needs loss scaling against underflow; bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler(runtime.device.type,
                                           enabled=self.use_amp and self.call.amp_dtype == "float16")
        self.best: dict[str, Any] = {"metric": _metric_name(cfg.best_metric), "mode": cfg.best_metric_mode,
                                     "value": None, "epoch": None}
        self.start_epoch = cfg.start_epoch
        self.pending_test: dict[str, Any] | None = None  # an epoch whose test a kill interrupted
        self.resumed_here = False  # resumed from this output folder's own checkpoint
        if cfg.resume:
            self._resume(cfg.resume)

    # ------------------------------------------------------------------ validation
    def _validation_split(self) -> tuple[str, str | None, dict[str, Any] | None]:
        """``(training data path, validation path, what results.json records about it)``.

        ``--val_split F`` holds out a seeded fraction of the training pairs (every member of a
        balanced dataset alike), written to ``val_split.json`` with the JSON datasets of both
        parts; a resumed run reads the same file back, so the held-out files never change.
        """
        cfg, runtime = self.cfg, self.runtime
        if cfg.val_data_path:
            from ..datasets.identity import path_content_hash

            content = None
            if runtime.is_main:  # recorded by rank 0 only (config.json, checkpoints)
                try:
                    content = path_content_hash(cfg.val_data_path).get("content_hash")
                except Exception as err:  # the dataset's own check below names the problem
                    logger.debug("no content hash of %s: %s", cfg.val_data_path, err)
            return cfg.data_path, cfg.val_data_path, {"source": "val_data_path", "path": cfg.val_data_path,
                                                     "content_hash": content}
        if cfg.val_split is None:
            return cfg.data_path, None, None
        from .validation import split_training_data

        paths = None
        if runtime.is_main:
            paths = split_training_data(cfg.data_path, cfg.val_split, cfg.seed, Path(cfg.output_dir),
                                        reuse=bool(cfg.resume))
        paths = runtime.all_gather_object(paths)[0]
        return paths["training"], paths["validation"], {"source": "val_split", "fraction": cfg.val_split,
                                                        "files": runfolder.VAL_SPLIT, "held_out": paths["count"]}

    def _check_batch_size(self) -> None:
        """A batch larger than the data the rank holds trains on fewer samples than the learning
        rate was scaled for: say so."""
        cfg, runtime = self.cfg, self.runtime
        per_rank = math.ceil(len(self.train_set) / runtime.world_size)
        if cfg.batch_size > per_rank and runtime.is_main:
            lr_note = (f" --lr {cfg.lr} is used as given" if cfg.lr is not None else
                       f" the learning rate is scaled for {cfg.batch_size * cfg.accum_iter * runtime.world_size} "
                       f"samples per update (--blr x effective batch / 256) but each step sees at most {per_rank}")
            logger.warning("--batch_size %d is larger than the %d training samples each of the %d process(es) holds: "
                           "every step holds all of them;%s. Lower --batch_size (and --accum_iter) to match the data.",
                           cfg.batch_size, per_rank, runtime.world_size, lr_note)

    # ------------------------------------------------------------------ resume
    def _resume(self, resume: str) -> None:
        out = Path(self.cfg.output_dir)
        if resume == "auto":
            path = out / RESUME_NAME if (out / RESUME_NAME).is_file() else latest_checkpoint(out)
            if path is not None and path.name != RESUME_NAME:
                finished = [r.get("epoch") for r in self._logged_records() if isinstance(r.get("epoch"), int)]
                if finished:  # an epoch's log line is written after its full state: the file was removed
                    raise UsageError(
                        f"--resume auto: {RESUME_NAME} is missing from {out}, yet log.txt records {len(finished)} "
                        f"finished epoch(s) (the last {max(finished)}): the file was deleted, so the run cannot "
                        f"continue exactly. Continue from a numbered checkpoint's weights with a fresh optimizer "
                        f"(--resume {path}), or start again with --overwrite")
                logger.info("--resume auto: %s holds the model only and there is no %s (the run stopped before "
                            "its first full state): starting from scratch", path.name, RESUME_NAME)
                path = None
        else:
            path = Path(resume)
            if not path.is_file():
                raise UsageError(f"--resume {resume}: no such checkpoint file (give a .pth file, or 'auto' to continue "
                                 f"the run in --output_dir)")
        if path is None:
            logger.info("--resume auto: no checkpoint in %s, starting from scratch", out)
            return
        ckpt = read_checkpoint(path, mmap=True)
        if "optimizer" not in ckpt:
            # a model-only checkpoint-<e>.pth: the full state of the same epoch may lie beside it
            full = path.parent / RESUME_NAME
            meta = read_checkpoint(full, mmap=True) if full.is_file() else {}
            if "epoch" in ckpt and meta.get("epoch") == ckpt.get("epoch") and "optimizer" in meta:
                path = full
            elif resume != "auto":
                logger.warning("%s holds the model only (no optimizer state): training continues from its weights "
                               "with a fresh optimizer; resume from %s to continue exactly", path, RESUME_NAME)
        ckpt = load_checkpoint(path, self.model, self.optimizer, self.scaler, self.scheduler)
        if "epoch" in ckpt:
            self.start_epoch = int(ckpt["epoch"]) + 1
        elif checkpoint_epoch(path) is not None:
            self.start_epoch = int(checkpoint_epoch(path)) + 1
        if isinstance(ckpt.get("best"), dict):
            self.best.update({k: ckpt["best"].get(k) for k in ("value", "epoch")})
            self.best["metric"] = self.best["metric"] or ckpt["best"].get("metric")
        self.resumed_here = path.parent.resolve() == out.resolve()
        if ckpt.get("test_pending") and self.resumed_here:
            self.pending_test = {"epoch": int(ckpt["epoch"]), "train_stats": dict(ckpt.get("train_stats") or {})}
        logger.info("resumed from %s: continuing at epoch %d", path, self.start_epoch)
        if not self.resumed_here:
            logger.info("the checkpoint is from another folder: %s starts its own log and checkpoints (the best "
                        "so far, %s, is the other run's)", out, self.best["value"])
        old_args = ckpt.get("args") if isinstance(ckpt.get("args"), dict) else {}
        changed = [(k, old_args[k], getattr(self.args, k)) for k in runoptions.resume_sensitive()
                   if k in old_args and old_args[k] != plain(getattr(self.args, k, None))]
        if changed and self.runtime.is_main:
            logger.warning("resuming with options that differ from the run that wrote %s: %s; the continued run is "
                           "not the one that was started (its numbers mix both settings)", path.name,
                           ", ".join(f"--{k} {old!r} -> {new!r}" for k, old, new in changed))
        old_epochs = old_args.get("epochs")
        if old_epochs is not None and int(old_epochs) != self.cfg.epochs:
            # the cosine schedule spans --epochs: a new value moves the curve under the run
            before = WarmupCosineSchedule(self.optimizer, self.lr, self.cfg.min_lr, self.cfg.warmup_epochs,
                                          int(old_epochs)).lr_at(self.start_epoch)
            after = self.scheduler.lr_at(self.start_epoch)
            if abs(before - after) > 1e-6 * max(abs(before), abs(after)):
                logger.warning("the checkpoint's run had --epochs %s, this one %d: the learning rate at epoch %d "
                               "changes from %.3g to %.3g (the cosine schedule spans --epochs)", old_epochs,
                               self.cfg.epochs, self.start_epoch, before, after)

    def _logged_records(self) -> list:
        """``log.txt`` records (rank 0 reads the file, every rank gets the same list)."""
        records = []
        if self.runtime.is_main:
            path = Path(self.cfg.output_dir) / runfolder.LOG
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut short by a kill
                        continue
        return self.runtime.all_gather_object(records)[0]

    def _after_resume(self) -> None:
        """Make the run folder consistent with the resumed state (the rule in the module docstring)."""
        last = self.start_epoch - 1
        records = [r for r in self._logged_records() if isinstance(r.get("epoch"), int) and r["epoch"] <= last]
        if self.pending_test is not None and not any(r["epoch"] == last for r in records):
            logger.info("epoch %d was not tested before the run stopped: testing it now", last)
            record = self._close_epoch(last, self.pending_test["train_stats"], tested=bool(self.select_on),
                                       saved=None)
            records.append(record)
        self.pending_test = None
        metric, mode = self.best["metric"], self.best["mode"]
        best_value, best_epoch = None, None
        for r in records:
            value = r.get(runfolder.test_key(metric, prefix=self._prefix)) if metric else None
            if isinstance(value, (int, float)) and not math.isnan(value):
                if best_value is None or (value > best_value if mode == "max" else value < best_value):
                    best_value, best_epoch = float(value), int(r["epoch"])
        if best_epoch is not None:
            self.best.update(value=best_value, epoch=best_epoch)
        if self.runtime.is_main:
            self._reconcile_best_file(last)

    def _reconcile_best_file(self, last: int) -> None:
        out = Path(self.cfg.output_dir)
        best_file = out / BEST_NAME
        have = None
        if best_file.is_file():
            try:
                have = read_checkpoint(best_file, mmap=True).get("epoch")
            except Exception:  # a damaged file is replaced below
                have = None
        want = self.best["epoch"]
        if want is None:
            if best_file.is_file() and (have is None or have > last):
                best_file.unlink()
                logger.info("removed %s (epoch %s): no tested epoch up to %d", BEST_NAME, have, last)
            return
        if have == want:
            return
        numbered = out / runfolder.checkpoint_name(want)
        if want == last:
            self._save(self._model_state(last), BEST_NAME)
        elif numbered.is_file():
            link_or_copy(numbered, best_file)
        else:
            logger.warning("%s should hold epoch %d (best %s %.4f in log.txt) but that epoch's weights were not kept "
                           "(no checkpoint-%d.pth); it still holds epoch %s", BEST_NAME, want, self.best["metric"],
                           self.best["value"], want, have)
            return
        logger.info("%s now holds epoch %d (best %s in log.txt)", BEST_NAME, want, self.best["metric"])

    # ------------------------------------------------------------------ epochs
    @property
    def _prefix(self) -> str:
        """``val`` when the checkpoint is chosen on validation (log keys ``val_<metric>``), else ``test``."""
        return "val" if self.select_on == "validation" else "test"

    def selection_rule(self) -> dict[str, Any]:
        """How checkpoint-best.pth is chosen, as results.json records it (docs/results.md)."""
        return {"on": self.select_on, "metric": self.best["metric"], "mode": self.best["mode"],
                "validation": self.validation}

    def run(self) -> dict[str, Any]:
        cfg, runtime = self.cfg, self.runtime
        definitions = metric_definitions(self.evaluators)
        self._check_best_metric(definitions)
        rule = None
        if self.select_on:
            metric = f"'{self.best['metric']}'" if self.best["metric"] else "the first metric of the first evaluator"
            where = ("the validation set" if self.select_on == "validation" else
                     "the test sets (optimistic: give --val_split or --val_data_path to choose on validation)")
            rule = (f"{BEST_NAME}: the {'lowest' if self.best['mode'] == 'min' else 'highest'} mean over {where} of "
                    f"{metric}, checked on every test epoch")
            logger.info(rule)
        self.writer.write_config("train", self.args, self.model_kwargs, runtime,
                                 {"lr": self.lr, "amp": self.call.amp_dtype if self.use_amp else False,
                                  "test_sets": list(self.test_loaders), "best_checkpoint_rule": rule,
                                  "selection": self.selection_rule(), "start_epoch": self.start_epoch,
                                  **({"from_checkpoint": self.session.from_base} if self.session.from_base else {})})
        self.writer.write_json(runfolder.METRIC_DEFINITIONS, definitions)
        for name in (runfolder.LOG, runfolder.TRAIN_STEPS):  # a resumed run repeats the epochs after its checkpoint
            self.writer.drop_records_from(name, self.start_epoch)
        if self.resumed_here:
            self._after_resume()
        if self.start_epoch >= cfg.epochs:
            logger.info("the run in %s has already trained all %d epochs (resumed at epoch %d): nothing to train; "
                        "raise --epochs to continue it", cfg.output_dir, cfg.epochs, self.start_epoch)
        logger.info("%d training samples, %d steps per epoch, lr %.3g, AMP %s", len(self.train_set),
                    len(self.loader), self.lr, self.call.amp_dtype if self.use_amp else "off")
        started = time.time()
        record: dict[str, Any] = {}
        for epoch in range(self.start_epoch, cfg.epochs):
            train_stats = self.train_one_epoch(epoch)
            stop = self._stop_requested(epoch)
            last = epoch + 1 == cfg.epochs or stop
            tested = bool(self.select_on) and (epoch % cfg.test_period == 0 or last)
            save = last or (epoch % cfg.save_period == 0 if cfg.save_period > 0 else tested)
            # the epoch's work is on disk before its test can fail (module docstring)
            saved = self._save(self._model_state(epoch), runfolder.checkpoint_name(epoch)) if save else None
            self._save(self._full_state(epoch, train_stats, tested), RESUME_NAME)
            record = self._close_epoch(epoch, train_stats, tested, saved)
            runtime.barrier()
            if stop:
                break
        logger.info("training time %s", time.strftime("%H:%M:%S", time.gmtime(time.time() - started)))
        result = {**record, "best": dict(self.best), "output_dir": str(cfg.output_dir)}
        if self.select_on == "validation" and self.test_loaders:
            result["results"] = self.test_chosen_checkpoint(definitions)
        self.writer.close()
        return result

    def test_chosen_checkpoint(self, definitions: dict[str, str]) -> str | None:
        """Test every test set once, on the checkpoint validation chose; results.json + per_image.csv."""
        from .results import ResultsWriter, checkpoint_provenance, dataset_provenance

        cfg, runtime = self.cfg, self.runtime
        best = Path(cfg.output_dir) / BEST_NAME
        self.runtime.barrier()
        if not best.is_file():
            logger.warning("no %s (no epoch was validated): the test sets are not tested", BEST_NAME)
            return None
        meta = load_checkpoint(best, self.model, map_location=runtime.device)
        logger.info("testing %s (epoch %s, chosen on validation) on %d test set(s)", BEST_NAME, meta.get("epoch"),
                    len(self.test_loaders))
        results = ResultsWriter(runtime, cfg.output_dir, "train", self.args, self.model_kwargs, definitions, self.call)
        checkpoint = checkpoint_provenance(str(best), meta) if runtime.is_main else {}
        for name, loader in self.test_loaders.items():
            m = measure(self.model, loader, self.evaluators, runtime, self.call, desc=f"test {name}",
                        bootstrap=cfg.bootstrap, seed=cfg.seed)
            if runtime.is_main:
                dataset = dataset_provenance(name, self.test_paths[name], loader.dataset,
                                             {"images": m.images, "manipulated": m.manipulated,
                                              "authentic": m.authentic})
                results.add(m, checkpoint=checkpoint, dataset=dataset, epoch=meta.get("epoch"))
            logger.info("test set %s (checkpoint of epoch %s): %s", name, meta.get("epoch"),
                        "  ".join(f"{k} {v:.4f}" for k, v in m.metrics.items()))
        return str(Path(cfg.output_dir) / runfolder.RESULTS)

    def _close_epoch(self, epoch: int, train_stats: dict[str, float], tested: bool,
                     saved: Path | None) -> dict[str, Any]:
        """Test (when due), write the epoch's log line, update the best checkpoint."""
        record: dict[str, Any] = {"epoch": epoch, **{f"train_{k}": v for k, v in train_stats.items()}}
        improved = False
        if tested:
            per_set = self.test(epoch)
            record.update(flat_test_record(per_set, prefix=self._prefix))
            improved = self._update_best(mean_over_sets(per_set), epoch)
        self.writer.append_jsonl(runfolder.LOG, record)
        if improved and self.runtime.is_main:
            if saved is not None and saved.is_file():
                link_or_copy(saved, Path(self.cfg.output_dir) / BEST_NAME)
                logger.info("saved %s (epoch %d)", BEST_NAME, epoch)
            else:
                self._save(self._model_state(epoch), BEST_NAME)
        return record

    def _stop_requested(self, epoch: int) -> bool:
        """A file named ``STOP`` in the output folder ends the run after this epoch (tested,
        checkpoint written, logs closed); the file is removed, so ``--resume auto`` continues."""
        stop = False
        if self.runtime.is_main:
            flag = Path(self.cfg.output_dir) / runfolder.STOP_FILE
            if flag.exists():
                stop = True
                try:
                    flag.unlink()
                except OSError:
                    pass
                if epoch + 1 < self.cfg.epochs:
                    logger.info("found %s: stopping after epoch %d (resume with --resume auto)", flag, epoch)
        return bool(self.runtime.all_gather_object(stop)[0])

    def _check_best_metric(self, definitions: dict[str, str]) -> None:
        """``--best_metric`` must name a metric of the evaluators; checked before the first epoch."""
        if not self.select_on:
            return
        declared = all(callable(getattr(ev, "definitions", None)) for ev in self.evaluators)
        if not declared or not definitions:
            return  # evaluators without definitions(): the name is checked at the first test
        if self.best["metric"] is None:
            self.best["metric"] = next(iter(definitions))
        elif self.best["metric"] not in definitions:
            raise UsageError(f"--best_metric {self.best['metric']!r} is not a metric of the evaluators; "
                             f"choose one of {sorted(definitions)}")

    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        cfg, runtime, model = self.cfg, self.runtime, self.model
        model.train()
        start_epoch(self.loader, epoch, cfg.seed, runtime.rank)
        seed_everything(cfg.seed + 1_000 * epoch + runtime.rank)  # model randomness (dropout, ...)
        steps = len(self.loader)
        log_every = max(steps // max(cfg.log_per_epoch_count, 1), 1)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        lr = self.scheduler.lr_at(epoch)
        batch = out = None
        self.optimizer.zero_grad(set_to_none=True)
        bar = progress(self.loader, runtime, f"epoch {epoch}/{cfg.epochs - 1}", total=steps,
                       every=max(log_every, math.ceil(steps / 10)))  # at most ~10 progress lines per epoch
        for step, batch in enumerate(bar):
            if step % cfg.accum_iter == 0:
                lr = self.scheduler.step(epoch + step / steps)
            update = (step + 1) % cfg.accum_iter == 0 or step + 1 == steps
            batch = batch_to_device(batch, runtime.device)
            no_sync = runtime.distributed and not update and hasattr(model, "no_sync")
            with model.no_sync() if no_sync else contextlib.nullcontext():
                with autocast(runtime, self.use_amp, self.call.amp_dtype):
                    out = forward(model, batch, self.call.predict_label)
                if step == 0:
                    check_model_output(out, batch, training=True)
                loss = out["backward_loss"]
                if not self._loss_is_finite(loss, out, epoch, step):
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                self.scaler.scale(loss / cfg.accum_iter).backward()
            if update:
                if cfg.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            terms = {"loss": loss} if not out.get("visual_loss") else out["visual_loss"]
            for key, value in terms.items():
                value = torch.as_tensor(value).detach().float().reshape(())
                sums[key] = sums[key] + value if key in sums else value.clone()
            count += 1
            if (step + 1) % log_every == 0 or step + 1 == steps:
                self._log_step(epoch, step, steps, lr, terms, bar)
        stats = self._reduce_means(sums, count)
        stats = {"lr": lr, **stats}
        # pictures on the test schedule (and the last epoch), beside the test pictures: writing
        # them every epoch costs more than the logging itself on short epochs
        if batch is not None and out is not None and (epoch % cfg.test_period == 0 or epoch + 1 == cfg.epochs):
            self.writer.images("train", batch, out, epoch)
        logger.info("epoch %d: %s", epoch, "  ".join(f"{k} {v:.5g}" for k, v in stats.items()))
        return stats

    def _loss_is_finite(self, loss: torch.Tensor, out: dict[str, Any], epoch: int, step: int) -> bool:
        finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
        self.runtime.all_reduce_(finite, op="min")  # every rank stops or skips together
        if bool(finite.item()):
            return True
        bad = [k for k, v in (out.get("visual_loss") or {}).items()
               if isinstance(v, torch.Tensor) and not torch.isfinite(v.detach()).all()]
        where = f"epoch {epoch}, step {step}"
        terms = f"non-finite loss terms: {bad}" if bad else "backward_loss is non-finite"
        if self.cfg.skip_nonfinite_loss:
            logger.warning("%s: %s (value %s); step skipped (--skip_nonfinite_loss)", where, terms, loss.item())
            return False
        raise NonFiniteLossError(
            f"{where}: the loss is {loss.item()} ({terms}, on some rank). Lower --lr / --blr, set "
            "--clip_grad, check the data with `benco data check`, or pass --skip_nonfinite_loss to skip such steps"
        )

    def _log_step(self, epoch: int, step: int, steps: int, lr: float, terms: dict[str, Any], bar) -> None:
        if not self.runtime.is_main:
            return
        values = {k: float(torch.as_tensor(v).detach().float()) for k, v in terms.items()}
        global_step = epoch * steps + step
        self.writer.append_jsonl(runfolder.TRAIN_STEPS, {"step": global_step, "epoch": epoch, "lr": lr, **values})
        x = int((epoch + step / steps) * 1000)  # IMDL-BenCo's "epoch_1000x" axis
        self.writer.scalar("lr", lr, x)
        self.writer.scalars("train_loss/", values, x)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({"lr": f"{lr:.2e}", **{k: f"{v:.4f}" for k, v in list(values.items())[:3]}})

    def _reduce_means(self, sums: dict[str, torch.Tensor], count: int) -> dict[str, float]:
        keys = sorted(sums)
        if not keys:
            return {}
        packed = torch.stack([sums[k].to(self.runtime.device) for k in keys] +
                             [torch.tensor(float(count), device=self.runtime.device)])
        self.runtime.all_reduce_(packed)
        total = max(float(packed[-1]), 1.0)
        return {k: float(packed[i]) / total for i, k in enumerate(keys)}

    # ------------------------------------------------------------------ testing
    def test(self, epoch: int) -> dict[str, dict[str, float]]:
        """The epoch's test: the validation set when there is one, else the test sets."""
        from ..evaluation.reference_names import with_reference_names

        per_set = {}
        loaders = self.val_loaders if self.select_on == "validation" else self.test_loaders
        what = "validation" if self.select_on == "validation" else "test set"
        for name, loader in loaders.items():
            metrics = evaluate(self.model, loader, self.evaluators, self.runtime, self.call,
                               desc=f"{self._prefix} {name}", writer=self.writer, image_tag=f"{self._prefix}_{name}",
                               step=epoch)
            per_set[name] = metrics
            self.writer.scalars(f"{self._prefix}_{name}/", metrics, epoch)
            logger.info("epoch %d, %s %s: %s", epoch, what, name,
                        "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        means = mean_over_sets(per_set)
        self.writer.scalars(f"{self._prefix}_mean/", means, epoch)
        for key, value in with_reference_names(means).items():
            if key not in means:  # IMDL-BenCo's tag, e.g. "test_pixel-level F1"
                self.writer.scalar(f"{self._prefix}_{key}", value, epoch)
        return per_set

    def _update_best(self, means: dict[str, float], epoch: int) -> bool:
        if not means:
            return False
        if self.best["metric"] is None:
            self.best["metric"] = next(iter(means))
        key = self.best["metric"]
        if key not in means:
            raise UsageError(f"--best_metric {key!r} is not among the {self._prefix} metrics {sorted(means)}")
        value = means[key]
        old = self.best["value"]
        better = old is None or (value > old if self.best["mode"] == "max" else value < old)
        if better and not math.isnan(value):
            self.best.update(value=value, epoch=epoch)
            logger.info("new best %s = %.4f at epoch %d (checkpoint-best.pth)", key, value, epoch)
            return True
        return False

    # ------------------------------------------------------------------ checkpoints
    def _model_state(self, epoch: int) -> dict[str, Any]:
        """What testing needs: the weights and the run's metadata."""
        return {
            "model": model_checkpoint_state(self.model),
            "epoch": epoch,
            "args": plain(self.args),
            "model_kwargs": plain(self.model_kwargs),
            "model_module": type(unwrap_model(self.model)).__module__,
            "best": plain(self.best),
            "selection_rule": plain(self.selection_rule()),
        }

    def _full_state(self, epoch: int, train_stats: dict[str, float], test_pending: bool) -> dict[str, Any]:
        """What resuming needs (``checkpoint-resume.pth``)."""
        state = {
            **self._model_state(epoch),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_stats": plain(train_stats),
            "test_pending": bool(test_pending),
        }
        if not self.cfg.save_optimizer:  # --no_save_optimizer: a throw-away run keeps its disk small
            del state["optimizer"]
        return state

    def _save(self, state: dict[str, Any], name: str) -> Path | None:
        if not self.runtime.is_main:
            return None
        path = save_checkpoint(Path(self.cfg.output_dir) / name, state)
        logger.info("saved %s", path)
        return path
