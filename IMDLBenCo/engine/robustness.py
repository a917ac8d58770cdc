"""``test_robust.py``: one checkpoint, loaded once, × a grid of attacks and strengths."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .. import runfolder
from .builders import build_dataset, eval_loader, test_set_paths
from .checkpoint import load_checkpoint
from .evaluate import default_evaluators, format_table, measure, metric_definitions
from .runtime import seed_everything
from .session import eval_session

logger = logging.getLogger("IMDLBenCo.engine")


def default_attacks() -> list[Any]:
    """The published robustness grid (IMDL-BenCo's ``test_robust.py``)."""
    from ..transforms import GaussianBlurWrapper, GaussianNoiseWrapper, JpegCompressionWrapper

    return [
        GaussianBlurWrapper([0, 3, 7, 11, 15, 19, 23]),
        GaussianNoiseWrapper([3, 7, 11, 15, 19, 23]),
        JpegCompressionWrapper([50, 60, 70, 80, 90, 100]),
    ]


def attack_name(wrapper: Any) -> str:
    name = getattr(wrapper, "name", None) or str(wrapper)
    return name[: -len("Wrapper")] if name.endswith("Wrapper") else name


def test_robust_main(argv: Sequence[str] | None = None, *, evaluators: Sequence[Any] | None = None,
                     attacks: Sequence[Any] | None = None) -> dict[str, Any]:
    """Run ``test_robust.py``; returns the content of ``robustness.json``.

    ``attacks``: wrappers iterating ``(strength, transform)`` pairs (``transform`` None for no
    attack), e.g. ``GaussianBlurWrapper([0, 3, 7])``; a user-written class of the same shape
    works too. Each attack is applied before pad/resize, with the random state seeded from
    ``--seed`` for every (attack, strength).
    """
    import time

    from .results import ResultsWriter, checkpoint_provenance, dataset_provenance

    started = time.time()
    with eval_session("test_robust", argv) as s:
        args, runtime, writer = s.args, s.runtime, s.writer
        evaluators = list(evaluators) if evaluators is not None else default_evaluators()
        attacks = list(attacks) if attacks is not None else default_attacks()
        definitions = metric_definitions(evaluators)
        writer.write_json(runfolder.METRIC_DEFINITIONS, definitions)
        meta = load_checkpoint(args.checkpoint_path, s.model, map_location=runtime.device)
        checkpoint = checkpoint_provenance(args.checkpoint_path, meta) if runtime.is_main else {}
        results_file = ResultsWriter(runtime, args.output_dir, "test_robust", args, s.model_kwargs, definitions, s.call,
                                     started=started)
        sets = test_set_paths(args.test_data_path)
        results: list[dict[str, Any]] = []
        for set_name, path in sets.items():
            checked = False  # the files of a set are checked once, not once per attack strength
            identity = None
            for wrapper in attacks:
                name = attack_name(wrapper)
                for param, transform in wrapper:
                    seed_everything(args.seed + runtime.rank)
                    dataset = build_dataset(path, s.data, transform, s.post_func, check_files=s.data.check_files and not checked)
                    checked = True
                    loader = eval_loader(dataset, args.test_batch_size, s.data, runtime)
                    m = measure(s.model, loader, evaluators, runtime, s.call, desc=f"{name} {param}",
                                bootstrap=args.bootstrap, seed=args.seed)
                    metrics = m.metrics
                    entry = {"attack": name, "param": param, "metrics": metrics}
                    if len(sets) > 1:
                        entry["set"] = set_name
                    results.append(entry)
                    if runtime.is_main:
                        counts = {"images": m.images, "manipulated": m.manipulated, "authentic": m.authentic}
                        if identity is None:  # the same files for every attack: hashed once
                            identity = dataset_provenance(set_name, path, dataset, counts)
                        results_file.add(m, checkpoint=checkpoint, dataset={**identity, **counts},
                                         attack={"name": name, "param": param}, epoch=meta.get("epoch"))
                    prefix = f"robustness/{set_name}/{name}/" if len(sets) > 1 else f"robustness/{name}/"
                    writer.scalars(prefix, metrics, _step(param))
                    logger.info("%s %s: %s", name, param, "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        report = {"checkpoint": str(args.checkpoint_path),
                  "dataset": str(args.test_data_path) if len(sets) > 1 else next(iter(sets.values())),
                  "results": results}
        writer.write_json(runfolder.ROBUSTNESS, report)
        if runtime.is_main and results:
            rows = [{"attack": r["attack"], "param": r["param"], **r["metrics"]} for r in results]
            logger.info("robustness:\n%s", format_table(rows, list(rows[0])))
        return report


def _step(param: Any) -> int:
    try:
        return int(round(float(param)))
    except (TypeError, ValueError):
        return 0
