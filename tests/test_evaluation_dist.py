"""Two real gloo processes: every evaluator equals the single-process value exactly (and sklearn)."""

from __future__ import annotations

import math
import pickle
import socket

import pytest
import torch
from eval_reference import all_evaluators, assert_matches, image_reference, pixel_reference, run_evaluators

from IMDLBenCo.evaluation import EvalSampler

pytestmark = pytest.mark.dist

WORLD = 2


def _dataset(n=7):
    from test_evaluation import random_set

    return random_set(n=n, size=32, quantise=None, seed=3, padded=True)


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from IMDLBenCo.evaluation import EvalSampler

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for n in (7, 1):  # 7 images: shards of 4 and 3; 1 image: rank 1 sees nothing
            data = _dataset(n)
            sampler = EvalSampler(range(n))  # defaults from the process group
            assert (sampler.num_replicas, sampler.rank) == (WORLD, rank)
            evaluators = all_evaluators()
            results[n] = run_evaluators(evaluators, *data, batch_size=2, indices=sampler)
            local = {}
            for ev in evaluators:
                local.update(ev.compute(sync=False))  # this rank's shard only, no communication
            results[(n, "local")] = local
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_two_gloo_processes_equal_single_process(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    for n in (7, 1):
        data = _dataset(n)
        single = run_evaluators(all_evaluators(), *data, batch_size=2)
        for r in range(WORLD):
            dist_res = per_rank[r][n]
            assert dist_res.keys() == single.keys()
            diff = {k: (dist_res[k], single[k]) for k in single if not _same(dist_res[k], single[k])}
            assert not diff, f"rank {r}, {n} images: {diff}"
        assert_matches(single, {**pixel_reference(*data[:3]), **image_reference(*data[3:])})
    data = _dataset(7)
    for r in range(WORLD):
        shard = EvalSampler(range(7), num_replicas=WORLD, rank=r)
        alone = run_evaluators(all_evaluators(), *data, batch_size=2, indices=shard)
        local = per_rank[r][(7, "local")]
        assert all(_same(local[k], alone[k]) for k in alone), r
