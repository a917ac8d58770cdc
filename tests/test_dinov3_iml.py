"""DINOv3_IML: sizes, what trains, what checkpoints hold, backbone files, the merged export, AMP,
DDP with frozen weights, and one epoch through the engine. Backbones are random and shallow
(``backbone_depth``) so the file runs in well under a minute on two cores."""

from __future__ import annotations

import copy
import logging
import os
import tempfile

import pytest
import torch
from zoo_common import parse_model_kwargs, train_help

from IMDLBenCo.engine import check_model_output, load_checkpoint
from IMDLBenCo.engine.checkpoint import model_checkpoint_state, save_checkpoint
from IMDLBenCo.errors import CheckpointError, UsageError
from IMDLBenCo.model_zoo.dinov3_iml import DINOv3_IML

SMALL = dict(backbone="vit_small_patch16_dinov3", backbone_depth=2, lora_rank=4, lora_alpha=8.0, image_size=32)


def build(seed: int = 0, **kwargs) -> DINOv3_IML:
    torch.manual_seed(seed)
    return DINOv3_IML(**{**SMALL, **kwargs})


def perturb_trainables(model: DINOv3_IML, seed: int = 1) -> None:
    """Random adapters (LoRA B starts at zero, so they would not change the output) and BN statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                bn_weight = name.startswith("seg_head.") and name.endswith(("1.weight", "4.weight"))
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if bn_weight else 0.0))
        for name, b in model.seg_head.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def wake_layer_scales(net: torch.nn.Module) -> None:
    """Layer scales at 1: DINOv3 initialises them at 1e-5, which would hide what the blocks (and
    their adapters) do in a random backbone."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "gamma" in name:
                p.fill_(1.0)


def images(n: int = 2, h: int = 32, w: int = 32, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, h, w, generator=g)
    mask = torch.zeros(n, 1, h, w)
    mask[:, :, h // 4: h // 2, w // 3: w - 2] = 1
    return image, mask


def head_params(dim: int, width: int) -> int:
    half = width // 2
    return dim * width * 9 + width + 2 * width + width * half * 9 + half + 2 * half + half + 1


def is_trainable_name(name: str) -> bool:
    return "lora_" in name or name.startswith(("seg_head.", "label_head."))


@pytest.mark.parametrize("backbone,depth,size", [
    ("vit_small_patch16_dinov3", 2, (50, 36)),        # not a multiple of 16: padded inside
    ("vit_small_patch16_dinov3_qkvb", 1, (32, 48)),   # q/v biases: adapters must stay in the path
    ("vit_small_patch14_dinov2", 2, (42, 28)),        # patch 14, learned position embedding
    ("vit_base_patch16_dinov3", 1, (32, 32)),
])
def test_sizes_build_and_only_adapters_and_heads_train(backbone, depth, size):
    model = build(backbone=backbone, backbone_depth=depth).train()
    dim = model.backbone.embed_dim
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(is_trainable_name(n) for n in trainable)
    assert all(not p.requires_grad for n, p in model.named_parameters() if not is_trainable_name(n))
    lora = sum(p.numel() for n, p in trainable.items() if "lora_" in n)
    assert lora == depth * 4 * (dim + 3 * dim)  # A: r x D, B: 3D x r on every block's qkv
    assert sum(p.numel() for p in trainable.values()) == lora + head_params(dim, dim // 2)

    image, mask = images(2, *size)
    out = model(image=image, mask=mask, label=torch.ones(2, dtype=torch.long), if_predict_label=False)
    check_model_output(out, {"image": image, "mask": mask}, training=True)
    assert out["pred_mask"].shape == (2, 1, *size) and out["pred_label"] is None
    out["backward_loss"].backward()
    # every trainable parameter takes part in the forward (DDP without find_unused_parameters)
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n or n.startswith("seg_head.0"))
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("backbone,rank,published_m", [
    ("vit_small_patch16_dinov3", 32, 1.4), ("vit_small_patch16_dinov3", 64, 2.0),
    ("vit_base_patch16_dinov3", 32, 4.5), ("vit_base_patch16_dinov3", 64, 5.7),
    ("vit_large_patch16_dinov3", 32, 9.1), ("vit_large_patch16_dinov3", 64, 12.2),
])
def test_trainable_counts_match_the_paper(backbone, rank, published_m):
    """The trainable-parameter counts of the paper's table (LoRA r, alpha 2r, on qkv; head D/2, D/4)."""
    with torch.device("meta"):
        model = DINOv3_IML(backbone=backbone, lora_rank=rank, lora_alpha=2.0 * rank)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(trainable / 1e6 - published_m) < 0.06, trainable


def test_checkpoint_holds_adapters_and_heads_only(tmp_path):
    model = build(if_predict_label=True)
    state = model_checkpoint_state(model)
    frozen = [k for k in model.state_dict() if k.startswith("backbone.") and "lora_" not in k]
    assert frozen and not set(frozen) & set(state)
    assert {k for k in state if k != "backbone_signature"} == \
        {k for k in model.state_dict() if is_trainable_name(k)}  # adapters, heads, BN statistics
    assert set(model.optional_checkpoint_keys()) == set(frozen) | {"backbone_signature"}
    save_checkpoint(tmp_path / "c.pth", {"model": state})
    trainable_bytes = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    full_bytes = 4 * sum(v.numel() for v in model.state_dict().values())
    size = os.path.getsize(tmp_path / "c.pth")
    assert trainable_bytes <= size < trainable_bytes + 64 * 1024
    assert size < 0.25 * full_bytes


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    """A backbone weight file in timm's layout: the random weights of a seeded timm model."""
    import timm

    torch.manual_seed(123)
    net = timm.create_model("vit_small_patch16_dinov3", pretrained=False, num_classes=0, depth=2)
    wake_layer_scales(net)
    path = tmp_path_factory.mktemp("weights") / "vits16.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def test_checkpoint_loading_needs_the_same_backbone_file(tmp_path, backbone_file, caplog):
    image, _ = images()
    trained = build(backbone_weights=backbone_file).eval()
    perturb_trainables(trained)
    save_checkpoint(tmp_path / "checkpoint-0.pth", {"model": model_checkpoint_state(trained)})
    with torch.no_grad():
        expected = trained(image)["pred_mask"]

    fresh = build(seed=7, backbone_weights=backbone_file).eval()
    with caplog.at_level(logging.INFO):
        load_checkpoint(tmp_path / "checkpoint-0.pth", fresh)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert backbone_file in caplog.text and "must be the file" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(fresh(image)["pred_mask"], expected)

    # the authors' checkpoints use the same adapter and head names (peft on blocks.N.attn.qkv, seg_head.*);
    # filtered to those, without our signature, they load the same way
    external = {k: v for k, v in model_checkpoint_state(trained).items() if k != "backbone_signature"}
    torch.save({"model": external}, tmp_path / "external.pth")
    other = build(seed=8, backbone_weights=backbone_file).eval()
    load_checkpoint(tmp_path / "external.pth", other)
    with torch.no_grad():
        torch.testing.assert_close(other(image)["pred_mask"], expected)

    caplog.clear()
    random_backbone = build(seed=7).eval()
    with caplog.at_level(logging.WARNING):
        load_checkpoint(tmp_path / "checkpoint-0.pth", random_backbone)
    text = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "--backbone_weights" in text and "random" in text  # the missing file, by option name
    assert "other backbone weights" in text  # and the signature says the adapters do not fit

    with pytest.raises(CheckpointError, match="another shape|options"):
        load_checkpoint(tmp_path / "checkpoint-0.pth", build(lora_rank=8))


def _official_dinov3_layout(timm_state, qkv_bias=0.0):
    """timm's DINOv3 names back to Meta's release layout (storage tokens, ls*.gamma, masked qkv bias)."""
    out = {"mask_token": torch.zeros(1, 384), "rope_embed.periods": torch.ones(16)}
    for k, v in timm_state.items():
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[k] = v
        if k.endswith("attn.qkv.weight"):
            out[k.replace("weight", "bias")] = torch.full((v.shape[0],), qkv_bias)
            out[k.replace("weight", "bias_mask")] = torch.ones(v.shape[0])
    return out


def test_backbone_files_in_timm_and_official_layouts(tmp_path, backbone_file):
    from safetensors.torch import save_file

    source = torch.load(backbone_file, weights_only=True)
    probe = "blocks.1.mlp.fc2.weight"

    def loaded(model):
        return dict(model.backbone.state_dict())

    save_file(source, str(tmp_path / "model.safetensors"))
    torch.save(_official_dinov3_layout(source), tmp_path / "dinov3_vits16_pretrain.pth")
    for path in (backbone_file, tmp_path / "model.safetensors", tmp_path / "dinov3_vits16_pretrain.pth"):
        got = loaded(build(backbone_weights=str(path)))
        assert torch.equal(got[probe], source[probe]) and torch.equal(got["reg_token"], source["reg_token"])
        assert torch.equal(got["blocks.0.attn.qkv.base_layer.weight"], source["blocks.0.attn.qkv.weight"])

    # non-zero q/v biases need the _qkvb model; the bias-free one would silently lose them
    torch.save(_official_dinov3_layout(source, qkv_bias=0.5), tmp_path / "biased.pth")
    with pytest.raises(CheckpointError, match="_qkvb"):
        build(backbone_weights=str(tmp_path / "biased.pth"))
    got = loaded(build(backbone="vit_small_patch16_dinov3_qkvb", backbone_weights=str(tmp_path / "biased.pth")))
    assert torch.all(got["blocks.1.attn.q_bias"] == 0.5)

    with pytest.raises(CheckpointError, match="does not fit"):  # a ViT-S file for a ViT-B model
        build(backbone="vit_base_patch16_dinov3", backbone_weights=backbone_file)


def test_official_dinov2_file_with_another_grid(tmp_path):
    import timm

    torch.manual_seed(5)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, depth=2)  # 518 px: 37x37
    official = {**net.state_dict(), "mask_token": torch.zeros(1, 384)}
    torch.save(official, tmp_path / "dinov2_vits14_pretrain.pth")
    model = build(backbone="vit_small_patch14_dinov2", backbone_weights=str(tmp_path / "dinov2_vits14_pretrain.pth"))
    got = model.backbone.state_dict()
    assert torch.equal(got["blocks.1.attn.proj.weight"], official["blocks.1.attn.proj.weight"])
    assert got["pos_embed"].shape == (1, 1 + 2 * 2, 384)  # resampled to --image_size 32


@pytest.mark.parametrize("backbone", ["vit_small_patch16_dinov3", "vit_small_patch16_dinov3_qkvb",
                                      "vit_small_patch14_dinov2"])
def test_merged_export_gives_the_same_outputs(tmp_path, backbone):
    model = build(backbone=backbone).eval()
    wake_layer_scales(model.backbone)
    perturb_trainables(model)
    image, _ = images(2, 42, 42)
    with torch.no_grad():
        expected = model(image)["pred_mask"]
        bare = copy.deepcopy(model)
        for name, p in bare.named_parameters():
            if "lora_B" in name:
                p.zero_()
        assert (bare(image)["pred_mask"] - expected).abs().max() > 1e-3  # the adapters change the output

    merged = copy.deepcopy(model).merge_lora_()
    assert not [k for k in merged.state_dict() if "lora_" in k]
    with torch.no_grad():
        torch.testing.assert_close(merged(image)["pred_mask"], expected, rtol=1e-4, atol=1e-5)

    # the merged state dict is a self-contained inference checkpoint for --lora_rank 0
    save_checkpoint(tmp_path / "merged.pth", {"model": merged.state_dict()})
    plain = build(seed=9, backbone=backbone, lora_rank=0).eval()
    assert not [n for n, p in plain.named_parameters() if p.requires_grad and not n.startswith("seg_head.")]
    load_checkpoint(tmp_path / "merged.pth", plain)
    with torch.no_grad():
        torch.testing.assert_close(plain(image)["pred_mask"], expected, rtol=1e-4, atol=1e-5)


def test_label_head_edge_loss_and_bfloat16_autocast():
    model = build(if_predict_label=True).train()
    image, mask = images(2, 32, 32)
    edge = torch.zeros_like(mask)
    edge[..., 6:10, :] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(image=image, mask=mask, label=torch.tensor([1, 0]), edge_mask=edge)
    check_model_output(out, {"image": image, "mask": mask}, training=True)
    assert out["pred_label"].shape == (2,)
    assert set(out["visual_loss"]) == {"predict_loss", "edge_loss", "label_loss", "combined_loss"}
    out["backward_loss"].backward()
    lora_b = model.backbone.blocks[1].attn.qkv.lora_B.default.weight
    for p in (model.label_head.weight, model.seg_head[0].weight, lora_b):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("predict_label", [False, True])
def test_ddp_without_find_unused_parameters(predict_label):
    """Frozen weights are not in DDP's reducer, and every trainable one is used: a second step of a
    DDP model whose parameters went unused would raise."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already running in this process")
    fd, store = tempfile.mkstemp()
    os.close(fd)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(build(if_predict_label=predict_label).train())
        image, mask = images(2, 32, 32)
        for _ in range(2):
            ddp(image=image, mask=mask, label=torch.tensor([1, 0]))["backward_loss"].backward()
    finally:
        dist.destroy_process_group()
        os.unlink(store)


@pytest.mark.parametrize("mode", ["--if_resizing", "--if_padding"])
def test_one_epoch_train_and_test_through_the_engine(tmp_path, mode):
    from IMDLBenCo import engine
    from IMDLBenCo.datasets import synth

    info = synth.make_synthetic_dataset(str(tmp_path / "data"), n=6, size=64, seed=0)
    model_args = ["--model", "DINOv3_IML", "--backbone", "vit_small_patch16_dinov3", "--backbone_depth", "2",
                  "--lora_rank", "4", "--lora_alpha", "8", "--image_size", "64", mode, "--device", "cpu",
                  "--num_workers", "0", "--test_batch_size", "2"]
    out = tmp_path / "out"
    res = engine.train_main([*model_args, "--data_path", info["splits"]["train"], "--test_data_path",
                             info["splits"]["test"], "--output_dir", str(out), "--epochs", "1", "--batch_size", "2",
                             "--accum_iter", "1", "--warmup_epochs", "0", "--test_period", "1",
                             "--edge_mask_width", "3"], train_transform=False)
    assert 0.0 < res["train_predict_loss"] < 1e3 and "train_edge_loss" in res
    assert 0.0 <= res["test_pixel_f1"] <= 1.0
    saved = torch.load(out / "checkpoint-0.pth", weights_only=True)["model"]
    assert saved and all(is_trainable_name(k) or k == "backbone_signature" for k in saved)
    if mode == "--if_padding":
        return
    # the other scripts on the run's adapters-only checkpoint
    from IMDLBenCo.transforms import GaussianBlurWrapper

    test_set, ckpt = info["splits"]["test"], str(out / "checkpoint-0.pth")
    summary = engine.test_main([*model_args, "--test_data_json", test_set, "--checkpoint_path", str(out),
                                "--output_dir", str(tmp_path / "eval")])
    assert summary["rows"] and 0.0 <= summary["rows"][0]["pixel_f1"] <= 1.0
    robust = engine.test_robust_main([*model_args, "--test_data_path", test_set, "--checkpoint_path", ckpt,
                                      "--output_dir", str(tmp_path / "robust")], attacks=[GaussianBlurWrapper([0, 3])])
    assert [r["param"] for r in robust["results"]] == [0, 3]
    saved = engine.save_images_main([*model_args, "--test_data_path", test_set, "--checkpoint_path", ckpt,
                                     "--output_dir", str(tmp_path / "pred")])
    assert saved["predictions"] and all((tmp_path / "pred" / p["pred_path"]).is_file() for p in saved["predictions"])
    cost = engine.complexity_main([*model_args, "--output_dir", str(tmp_path / "cx")])
    assert 0 < cost["trainable_params"] < cost["params"] and cost["flops"] > 0


def test_options_and_errors():
    text = train_help("DINOv3_IML")
    for opt in ("--backbone", "--backbone_weights", "--lora_rank", "--lora_alpha", "--lora_dropout",
                "--lora_targets", "--head_channels", "--edge_lambda", "--backbone_depth"):
        assert opt in text
    kwargs = parse_model_kwargs("DINOv3_IML", ["--lora_targets", "qkv", "proj", "--lora_rank", "8"])
    assert list(kwargs["lora_targets"]) == ["qkv", "proj"] and kwargs["lora_rank"] == 8
    with pytest.raises(UsageError, match="vit_small_patch16_dinov3"):
        DINOv3_IML(backbone="vit_smal_patch16_dinov3")
    with pytest.raises(UsageError, match="--lora_targets.*qkv"):
        build(lora_targets=["nothing_like_this"])


@pytest.mark.slow
def test_full_depth_vit_small_at_512():
    model = DINOv3_IML(backbone="vit_small_patch16_dinov3").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 512, 512))
    assert out["pred_mask"].shape == (1, 1, 512, 512)
