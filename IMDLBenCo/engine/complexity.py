"""``test_complexity.py``: parameters, FLOPs and MACs of a model, via ``torch.utils.flop_counter``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import runfolder
from .builders import batch_to_device, build_dataset, evaluation_mode, forward
from .config import CallConfig, DataConfig
from .session import eval_session

logger = logging.getLogger("IMDLBenCo.engine")


def synthetic_sample(data: DataConfig, post_func: Callable | None = None) -> dict[str, Any]:
    """One sample dict of the size ``data`` asks for (deferred uint8 form), with random content."""
    s = data.image_size
    gen = torch.Generator().manual_seed(data.seed)
    mask = (torch.rand(1, s, s, generator=gen) > 0.5).to(torch.uint8)
    sample: dict[str, Any] = {
        "image": torch.randint(0, 256, (3, s, s), generator=gen, dtype=torch.uint8),
        "mask": mask,
        "label": torch.tensor(1, dtype=torch.int64),
        "shape": torch.tensor((s, s)),
        "original_shape": torch.tensor((s, s)),
        "origin_shape": torch.tensor((s, s)),
        "name": "synthetic.png",
        "image_path": "synthetic.png",
        "mask_path": "synthetic_gt.png",
    }
    if data.padding:
        sample["shape_mask"] = torch.ones(1, s, s, dtype=torch.uint8)
    if data.edge_mask_width:
        from ..transforms import edge_mask

        sample["edge_mask"] = torch.from_numpy(edge_mask(mask[0].numpy(), data.edge_mask_width))[None]
    if post_func is not None:
        post_func(sample)
    return sample


def count_complexity(model: torch.nn.Module, batch: dict[str, Any], call: CallConfig | None = None) -> dict[str, int]:
    """Parameters and forward FLOPs of ``model`` on ``batch`` (MACs = FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    counter = FlopCounterMode(display=False)
    call = call or CallConfig()
    with torch.no_grad(), evaluation_mode(model, keep_train_mode=call.keep_train_mode) as net, counter:
        forward(net, batch, call.predict_label)
    flops = int(counter.get_total_flops())
    return {"params": params, "trainable_params": trainable, "flops": flops, "macs": flops // 2}


def complexity_main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run ``test_complexity.py``; returns the content of ``complexity.json``.

    Counts the forward pass on ``--test_batch_size`` copies of one sample: the first of
    ``--test_data_path`` if given, else a synthetic ``--image_size`` sample. FLOPs grow with the
    batch size, so compare models at batch size 1 (the default).
    """
    from torch.utils.data import default_collate

    with eval_session("test_complexity", argv, tensorboard=False) as s:
        args = s.args
        if args.test_data_path:
            sample = build_dataset(args.test_data_path, s.data, None, s.post_func)[0]
        else:
            sample = synthetic_sample(s.data, s.post_func)
        batch = batch_to_device(default_collate([sample] * args.test_batch_size), s.runtime.device)
        counts = count_complexity(s.model, batch, s.call)
        report = {"model": args.model, "input_size": [args.test_batch_size, 3, args.image_size, args.image_size],
                  **counts}
        s.writer.write_json(runfolder.COMPLEXITY, report)
        logger.info("%s: %.3f M parameters (%.3f M trainable), %.3f GFLOPs, %.3f GMACs per forward of %s",
                    args.model, counts["params"] / 1e6, counts["trainable_params"] / 1e6, counts["flops"] / 1e9,
                    counts["macs"] / 1e9, "x".join(map(str, report["input_size"])))
        return report
