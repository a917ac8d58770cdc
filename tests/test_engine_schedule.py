"""Optimizer groups (which parameters get weight decay) and the warm-up + cosine learning rate."""

from __future__ import annotations

import math

import pytest
import torch

from IMDLBenCo.engine.schedule import WarmupCosineSchedule, param_groups, resolve_lr


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.norm = torch.nn.LayerNorm(3)
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, 2, 3))
        self.frozen = torch.nn.Parameter(torch.zeros(3, 3), requires_grad=False)

    def no_weight_decay(self):
        return {"pos_embed"}


def _ids(group):
    return {id(p) for p in group["params"]}


def test_param_groups_decay_only_weights_not_listed_by_the_model():
    model = Tiny()
    decay, no_decay = param_groups(model, weight_decay=0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert _ids(decay) == {id(model.fc.weight)}
    assert _ids(no_decay) == {id(model.fc.bias), id(model.norm.weight), id(model.norm.bias), id(model.pos_embed)}


def test_schedule_warms_up_linearly_then_follows_the_cosine():
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))]},
                           {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.1}], lr=1.0)
    sched = WarmupCosineSchedule(opt, lr=1e-3, min_lr=1e-5, warmup_epochs=2, epochs=10)
    assert sched.lr_at(0.0) == 0.0 and sched.lr_at(1.0) == pytest.approx(5e-4)
    assert sched.lr_at(2.0) == pytest.approx(1e-3)
    assert sched.lr_at(6.0) == pytest.approx((1e-3 + 1e-5) / 2)  # half-way through the cosine
    assert sched.lr_at(4.0) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert sched.lr_at(10.0) == pytest.approx(1e-5) and sched.lr_at(12.0) == pytest.approx(1e-5)
    assert sched.step(1.0) == pytest.approx(5e-4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-4, 5e-5])
    restored = WarmupCosineSchedule(opt, lr=1e-3, min_lr=1e-5, warmup_epochs=2, epochs=10)
    restored.load_state_dict(sched.state_dict())
    assert restored.last_epoch_float == 1.0


def test_resolve_lr_scales_the_base_lr_by_the_effective_batch():
    assert resolve_lr(2e-4, blr=1e-3, batch_size=8, accum_iter=2, world_size=4) == 2e-4
    assert resolve_lr(None, blr=1e-3, batch_size=8, accum_iter=2, world_size=4) == pytest.approx(1e-3 * 64 / 256)


def test_uncallable_no_weight_decay_is_reported(caplog):
    import logging

    import torch

    from IMDLBenCo.engine.schedule import param_groups

    class Odd(torch.nn.Module):
        no_weight_decay = {"w"}  # a set, not a method

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, 2))

    with caplog.at_level(logging.WARNING):
        groups = param_groups(Odd(), 0.05)
    assert "no_weight_decay() could not be called" in caplog.text
    assert sum(len(g["params"]) for g in groups if g["weight_decay"] > 0) == 1


def test_bad_rank_variable_is_named(monkeypatch):
    import pytest

    from IMDLBenCo.engine.runtime import _env_int

    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match="RANK='zero'"):
        _env_int("RANK", 0)
    monkeypatch.delenv("RANK")
    assert _env_int("RANK", 0) == 0
