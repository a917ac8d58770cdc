"""TruFor: IMDL-BenCo state dict per phase, freezing, losses against the reference arithmetic,
pretrained and checkpoint loading, configuration, options, one epoch through the engine."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from zoo_common import build_meta, check_output_contract, parse_model_kwargs, train_help
from zoo_manifest import load_manifest, manifest_state_dict

from IMDLBenCo.datasets.utils import IMAGENET_MEAN, IMAGENET_STD
from IMDLBenCo.model_zoo.trufor import Trufor
from IMDLBenCo.model_zoo.trufor.config import DEFAULT_CONFIG_PATH, load_config

MANIFESTS = {2: "Trufor", 3: "Trufor__phase3"}


def _batch(b=2, size=64):
    g = torch.Generator().manual_seed(1)
    image = torch.randn(b, 3, size, size, generator=g)
    mask = torch.zeros(b, 1, size, size)
    mask[0, :, 10:40, 16:50] = 1
    return image, mask, torch.tensor([1, 0])


class _Capture:
    """Records what ``TruForNet`` returns (anomaly, confidence, detection logits) during a call."""

    def __init__(self, model):
        self.out = None
        self.handle = model.model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.out = tuple(t.detach() for t in output)

    def close(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def model2():
    torch.manual_seed(0)
    return Trufor(phase=2)


@pytest.fixture(scope="module")
def model3(model2, tmp_path_factory):
    """Phase 3 started from model2's weights, saved under the official TruFor names (no ``model.``)."""
    path = tmp_path_factory.mktemp("trufor") / "phase2.pth"
    torch.save(model2.model.state_dict(), path)
    return Trufor(phase=3, det_resume_ckpt=str(path))


# ------------------------------------------------------------------ state dict, parameters, freezing
@pytest.mark.parametrize("phase", [2, 3])
def test_state_dict_and_frozen_parameters_match_the_reference(phase):
    man = load_manifest(MANIFESTS[phase])
    meta = build_meta(Trufor, phase=phase)
    sd = meta.state_dict()
    assert list(sd) == man.keys
    assert {k: list(v.shape) for k, v in sd.items()} == man.shapes
    assert {k: str(v.dtype).replace("torch.", "") for k, v in sd.items()} == man.dtypes
    assert sum(p.numel() for p in meta.parameters()) == man.params == 68_697_421
    assert sum(p.numel() for p in meta.parameters() if p.requires_grad) == man.trainable_params
    assert [k for k, p in meta.named_parameters() if not p.requires_grad] == man.frozen
    meta.load_state_dict(manifest_state_dict(MANIFESTS[phase]), strict=True, assign=True)


def test_confidence_head_option_unfreezes_it_in_phase_3():
    meta = build_meta(Trufor, phase=3, train_confidence_head=True)
    trainable = {k.split(".")[1] for k, p in meta.named_parameters() if p.requires_grad}
    assert trainable == {"detection", "decode_head_conf"}


def test_bad_phase_names_the_option():
    with pytest.raises(ValueError, match="--phase"):
        build_meta(Trufor, phase=1)


# ------------------------------------------------------------------ phase 2
def test_phase2_forward_backward_and_losses(model2):
    from IMDLBenCo.engine import check_model_output

    model = model2
    model.train()
    image, mask, label = _batch()
    seen = {}
    hooks = [model.model.dncnn.register_forward_pre_hook(lambda m, a: seen.__setitem__("np", a[0])),
             model.model.backbone.register_forward_pre_hook(lambda m, a: seen.__setitem__("rgb", a[0]))]
    cap = _Capture(model)
    try:
        out = model(image=image, mask=mask, label=label)
    finally:
        cap.close()
        for h in hooks:
            h.remove()
    check_model_output(out, {"image": image, "mask": mask, "label": label}, training=True)
    check_output_contract(out, 2, (64, 64), want_label=True)
    assert set(out["visual_loss"]) == {"loss_ce", "dice_loss", "combined_loss"}

    # IMDL-BenCo's default input handling: Noiseprint++ reads the dataset tensor as it comes and the
    # encoder gets it ImageNet-normalised a second time
    assert torch.equal(seen["np"], image)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["rgb"], (image - mean) / std)

    # the reference's arithmetic: softmax probability, logs of probabilities, global Dice
    anomaly, conf, det = cap.out
    p = F.softmax(anomaly, dim=1)[:, 1:2]
    ce = -(0.5 * (1 - mask) * torch.log(1 - p) + 2.5 * mask * torch.log(p)).mean()
    dice = 1 - (2 * (mask * p).sum() + 1) / (mask.square().sum() + p.square().sum() + 1)
    vl = out["visual_loss"]
    torch.testing.assert_close(out["pred_mask"].detach(), p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["pred_label"].detach(), torch.sigmoid(det[:, 0]))
    torch.testing.assert_close(vl["loss_ce"], ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vl["dice_loss"], dice, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["backward_loss"].detach(), 0.3 * ce + 0.7 * dice, rtol=1e-5, atol=1e-6)

    out["backward_loss"].backward()
    net = model.model
    for p in (net.backbone.patch_embed1.proj.weight, net.backbone.extra_block3[5].mlp.fc2.weight,
              net.backbone.FFMs[0].cross.cross_attn.kv2.weight, net.decode_head.linear_pred.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    for p in (net.dncnn[0].weight, net.detection[0].weight):  # frozen
        assert p.grad is None
    assert net.decode_head_conf.linear_pred.weight.grad is None  # not in the phase-2 loss
    model.zero_grad(set_to_none=True)


def test_single_normalization_feeds_noiseprint_rgb_in_unit_range(model2):
    model = model2
    model.eval()
    image = _batch(b=1, size=32)[0]
    seen = {}
    hooks = [model.model.dncnn.register_forward_pre_hook(lambda m, a: seen.__setitem__("np", a[0])),
             model.model.backbone.register_forward_pre_hook(lambda m, a: seen.__setitem__("rgb", a[0]))]
    model.single_normalization = True
    try:
        with torch.no_grad():
            out = model(image)  # no mask: inference
    finally:
        model.single_normalization = False
        for h in hooks:
            h.remove()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen["np"], image * std + mean)
    torch.testing.assert_close(seen["rgb"], image, rtol=1e-5, atol=1e-5)  # normalised once
    assert out["pred_mask"].shape == (1, 1, 32, 32) and out["backward_loss"] == 0


# ------------------------------------------------------------------ phase 3
def test_phase3_resumes_from_the_phase2_checkpoint(model2, model3):
    for a, b in zip(model2.state_dict().values(), model3.state_dict().values()):
        assert torch.equal(a, b)


def test_phase3_forward_backward_and_losses(model3):
    model = model3
    model.train()
    image, mask, label = _batch()
    cap = _Capture(model)
    try:
        torch.manual_seed(0)
        out = model(image=image, mask=mask, label=label)
    finally:
        cap.close()
    check_output_contract(out, 2, (64, 64), want_label=True)
    assert set(out["visual_loss"]) == {"loss_conf", "loss_det", "combined_loss"}
    anomaly, conf, det = cap.out
    p = F.softmax(anomaly, dim=1)[:, 1:2]
    tcp = (1 - mask) * (1 - p) + mask * p
    loss_conf = ((conf - tcp) ** 2).mean()  # IMDL-BenCo: the raw confidence logits
    loss_det = F.binary_cross_entropy(torch.sigmoid(det), label.float().unsqueeze(1))
    vl = out["visual_loss"]
    torch.testing.assert_close(vl["loss_conf"], loss_conf, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vl["loss_det"], loss_det, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["backward_loss"].detach(), loss_conf + 0.5 * loss_det, rtol=1e-5, atol=1e-6)
    out["backward_loss"].backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert grads and all(k.startswith("model.detection.") for k in grads)
    assert model.model.detection[3].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)

    # ours: the official confidence training (sigmoid, trainable decoder)
    model.train_confidence_head = True
    model._freeze()
    try:
        model.eval()
        cap = _Capture(model)
        out = model(image=image, mask=mask, label=label)
        cap.close()
        anomaly, conf, _ = cap.out
        p = F.softmax(anomaly, dim=1)[:, 1:2]
        inner = -F.max_pool2d(-mask, 15, stride=1, padding=7)  # eroded forged region
        outer = 1 - F.max_pool2d(mask, 11, stride=1, padding=5)  # far from it
        valid = (inner + outer) > 0
        assert not valid.all() and valid.float().mean() > 0.5  # the border band is left out
        tcp = p * inner + (1 - p) * outer
        torch.testing.assert_close(out["visual_loss"]["loss_conf"],
                                   ((torch.sigmoid(conf) - tcp)[valid] ** 2).mean(), rtol=1e-5, atol=1e-6)
        out["backward_loss"].backward()
        assert model.model.decode_head_conf.linear_pred.weight.grad.abs().sum() > 0
        assert model.model.decode_head.linear_pred.weight.grad is None
    finally:
        model.train_confidence_head = False
        model.model.decode_head_conf.requires_grad_(False)
        model.zero_grad(set_to_none=True)


# ------------------------------------------------------------------ pretrained files
def test_pretrained_files(model3, tmp_path, caplog):
    # runs after the tests that use model3's weights: it overwrites some of them
    model = model3
    model.phase = 2
    try:
        dncnn = {k: torch.full_like(v, 0.25) for k, v in model.model.dncnn.state_dict().items()}
        torch.save({"network": dncnn}, tmp_path / "noiseprint++.th")  # the official layout
        mit = {"patch_embed1.proj.weight": torch.full((64, 3, 7, 7), 0.5), "block3.5.mlp.fc2.weight":
               torch.full((320, 1280), 0.75), "norm4.weight": torch.full((512,), 2.0), "head.weight": torch.zeros(1000, 512)}
        torch.save(mit, tmp_path / "mit_b2.pth")
        with caplog.at_level(logging.INFO):
            model._load_weights(str(tmp_path / "noiseprint++.th"), str(tmp_path / "mit_b2.pth"), None, False)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        net = model.model
        assert torch.all(net.dncnn[47].bias == 0.25) and torch.all(net.dncnn[45].running_var == 0.25)
        bb = net.backbone
        assert torch.all(bb.patch_embed1.proj.weight == 0.5) and torch.all(bb.block3[5].mlp.fc2.weight == 0.75)
        assert not torch.all(bb.extra_patch_embed1.proj.weight == 0.5)  # IMDL-BenCo: RGB stream only
        assert "head.weight" in caplog.text  # reported as unexpected
        # ours: both streams; a Noiseprint++ file with the full model's prefix
        torch.save({"model": {f"model.dncnn.{k}": v * 2 for k, v in dncnn.items()}}, tmp_path / "np_full.pth")
        model._load_weights(str(tmp_path / "np_full.pth"), str(tmp_path / "mit_b2.pth"), None, True)
        assert torch.all(net.dncnn[0].weight == 0.5)
        assert torch.all(bb.extra_patch_embed1.proj.weight == 0.5) and torch.all(bb.extra_norm4.weight == 2.0)
        # a wrong file names the option and the keys
        torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=r"--np_pretrain_weights .*missing: 0\.bias"):
            model._load_weights(str(tmp_path / "bad.pth"), None, None, False)
        with pytest.raises(FileNotFoundError, match="--mit_b2_pretrain_weights"):
            model._load_weights(None, str(tmp_path / "absent.pth"), None, False)
    finally:
        model.phase = 3


def test_resume_checkpoint_with_python_objects_gets_a_clear_error(tmp_path):
    np = pytest.importorskip("numpy")
    torch.save({"state_dict": {"a": torch.zeros(1)}, "best_value": np.float64(0.5)}, tmp_path / "trufor.pth.tar")
    with pytest.raises(ValueError, match="weights_only=False"):
        build_meta(Trufor, phase=3, det_resume_ckpt=str(tmp_path / "trufor.pth.tar"))


def test_one_warning_without_weights(caplog):
    with caplog.at_level(logging.WARNING):
        build_meta(Trufor, phase=2, det_resume_ckpt="")
        build_meta(Trufor, phase=3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert "--np_pretrain_weights" in warnings[0] and "--mit_b2_pretrain_weights" in warnings[0]
    assert "--det_resume_ckpt" in warnings[1]


# ------------------------------------------------------------------ configuration and options
def test_config_resolution_and_errors(tmp_path):
    assert load_config(None) == load_config("trufor.yaml") == load_config("./configs/trufor.yaml")
    assert load_config(str(DEFAULT_CONFIG_PATH)).bn_eps == 1e-3
    small = tmp_path / "small.yaml"
    small.write_text("MODEL:\n  MODS: ('RGB','NP++')\n  EXTRA:\n    BACKBONE: mit_b2\n    DECODER_EMBED_DIM: 256\n")
    meta = build_meta(Trufor, config_path=str(small))
    assert meta.model.decode_head.linear_fuse[0].weight.shape == (256, 1024, 1, 1)
    assert meta.model.decode_head.linear_fuse[1].eps == 1e-3 and meta.model.decode_head_conf.linear_fuse[1].eps == 1e-5
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  EXTRA:\n    BACKBONE: mit_b5\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: MODEL\.EXTRA\.BACKBONE"):
        load_config(str(bad))
    with pytest.raises(FileNotFoundError, match="--config_path"):
        load_config(str(tmp_path / "other.yaml"))


def test_help_and_imdlbenco_style_options():
    text = train_help("Trufor")
    for opt in ("--phase", "--np_pretrain_weights", "--mit_b2_pretrain_weights", "--config_path",
                "--det_resume_ckpt", "--single_normalization", "--mit_b2_both_streams", "--train_confidence_head"):
        assert opt in text
    kw = parse_model_kwargs("Trufor", ["--phase", "3", "--det_resume_ckpt", "", "--config_path", "./configs/trufor.yaml"])
    assert kw["phase"] == 3 and kw["det_resume_ckpt"] == "" and kw["config_path"] == "./configs/trufor.yaml"
    assert parse_model_kwargs("Trufor", ["--single_normalization", "true"])["single_normalization"] is True


# ------------------------------------------------------------------ the engine
def test_one_epoch_through_the_training_entry(tmp_path):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    res = engine.train_main([
        "--model", "Trufor", "--phase", "2", "--data_path", info["splits"]["train"],
        "--test_data_path", info["splits"]["test"], "--output_dir", str(tmp_path / "out"), "--epochs", "1",
        # one optimizer step at 32 px: the cost is the 68.7M-parameter model, not the data
        "--batch_size", "4", "--test_batch_size", "2", "--image_size", "32", "--if_resizing", "--if_predict_label",
        "--accum_iter", "1", "--warmup_epochs", "0", "--num_workers", "0", "--device", "cpu", "--test_period", "1",
    ], train_transform=False)
    for key in ("train_loss_ce", "train_dice_loss", "train_combined_loss"):
        assert key in res and res[key] == res[key] and abs(res[key]) < 1e3
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    assert (tmp_path / "out" / "checkpoint-0.pth").exists()


@pytest.mark.slow
def test_full_size_forward_and_amp(model2):
    """The recommended size (512) in evaluation, and a bfloat16-autocast training step."""
    model2.eval()
    with torch.no_grad():
        out = model2(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512) and out["pred_label"].shape == (1,)
    model2.train()
    image, mask, label = _batch(b=2, size=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model2(image, mask, label)
    assert out["backward_loss"].dtype == torch.float32 and torch.isfinite(out["backward_loss"])
    out["backward_loss"].backward()
    assert torch.isfinite(model2.model.backbone.patch_embed1.proj.weight.grad).all()
    model2.zero_grad(set_to_none=True)
