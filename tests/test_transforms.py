"""Training augmentation and robustness wrappers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from IMDLBenCo.datasets import ManiDataset
from IMDLBenCo.transforms import (
    AbstractTransformWrapper,
    GaussianBlurWrapper,
    GaussianNoiseWrapper,
    HorizontalFlip,
    JpegCompressionWrapper,
    RandomCopyMove,
    RandomInpainting,
    RandomRotate90,
    RandomScale,
    VerticalFlip,
    default_train_transform,
    denormalize,
    inpaint_box,
    jpeg_roundtrip,
    normalize,
)


def marked(h=40, w=60, seed=0):
    """An image whose red channel is the mask (255 inside), so alignment is checkable after geometry."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[5:17, 8:30] = 255
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[..., 0] = mask
    return image, mask


@pytest.mark.parametrize("t", [RandomScale(0.2, p=1), HorizontalFlip(p=1), VerticalFlip(p=1), RandomRotate90(p=1)])
def test_geometric_ops_move_the_mask_with_the_image(t):
    image, mask = marked()
    for seed in range(6):
        np.random.seed(seed)
        out = t(image=image, mask=mask)
        assert out["image"].shape[:2] == out["mask"].shape
        red = out["image"][..., 0] > 127
        # OpenCV's nearest neighbour (IMDL-BenCo's) samples pixel corners, bilinear pixel centres:
        # the two may differ on the border
        assert (red == (out["mask"] > 127)).mean() > 0.97
        assert out["mask"].any()


def test_copy_move_and_inpainting_mark_the_changed_window():
    image, mask = marked()
    np.random.seed(1)
    out = RandomCopyMove(p=1)(image=image, mask=np.zeros_like(mask))
    changed = np.any(out["image"] != image, axis=2)
    assert out["mask"].any() and not changed[out["mask"] == 0].any()
    np.random.seed(2)
    out = RandomInpainting(p=1)(image=image, mask=np.zeros_like(mask))
    ys, xs = np.nonzero(out["mask"])
    assert len(ys) and not np.any(out["image"] != image, axis=2)[out["mask"] == 0].any()
    # the marked region is one axis-aligned window, and exactly that window was refilled
    assert out["mask"][ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()


def test_inpainting_is_opencv_with_either_method_at_radius_3():
    """IMDL-BenCo's RandomInpainting: cv2.inpaint, radius 3, Telea or Navier-Stokes at random."""
    import cv2

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    methods = set()
    for seed in range(16):
        np.random.seed(seed)
        out = RandomInpainting(p=1)(image=image, mask=np.zeros((45, 70), np.uint8))
        window = (out["mask"] == 255).astype(np.uint8)
        hits = [flag for flag in (cv2.INPAINT_TELEA, cv2.INPAINT_NS)
                if np.array_equal(out["image"], cv2.inpaint(image, window, 3, flag))]
        assert hits, f"seed {seed}: the fill is neither OpenCV method at radius 3"
        methods.update(hits)
    assert methods == {cv2.INPAINT_TELEA, cv2.INPAINT_NS}


@pytest.mark.parametrize("method", ["telea", "ns"])
def test_inpaint_box_continues_the_surroundings(method):
    h, w = 60, 90
    flat = np.full((h, w, 3), (200, 40, 90), np.uint8)
    out = inpaint_box(flat, (10, 20, 40, 65), method=method)
    err = np.abs(out.astype(int) - flat)
    assert err.max() <= 5 and err.mean() < 0.5  # a constant stays (nearly: Telea rounds a little) constant
    ramp = np.repeat(np.linspace(0, 255, w)[None, :, None], h, axis=0).repeat(3, axis=2).astype(np.uint8)
    box = (15, 30, 45, 50)
    out = inpaint_box(ramp, box, method=method)
    y0, x0, y1, x1 = box
    outside = np.ones((h, w), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], ramp[outside])
    fill = out[y0:y1, x0:x1, 0].astype(float)
    # between the window's left and right border values, rising from left to right
    assert ramp[0, x0 - 1, 0] - 5 <= fill.min() and fill.max() <= ramp[0, x1, 0] + 5
    assert fill[:, -1].mean() - fill[:, 0].mean() > 0.5 * (float(ramp[0, x1, 0]) - float(ramp[0, x0 - 1, 0]))
    with pytest.raises(ValueError, match="inpainting method"):
        inpaint_box(ramp, box, method="fast")


def test_normalize_round_trip_and_dataset_arithmetic():
    """The normalisation models share with the datasets: exact inverse pair, same values as a
    dataset item, and the old import path still works."""
    from IMDLBenCo.datasets import IMAGENET_MEAN, normalize_batch
    from IMDLBenCo.datasets.utils import denormalize as old_denormalize

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 17, 23), dtype=np.uint8))
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert torch.equal(y, normalize_batch({"image": x.clone()})["image"])
    assert torch.equal((denormalize(y) * 255).round().to(torch.uint8), x)
    assert old_denormalize is denormalize and IMAGENET_MEAN == (0.485, 0.456, 0.406)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert normalize(channels_last).is_contiguous(memory_format=torch.channels_last)


def test_default_train_transform_reproduces_and_keeps_shapes():
    image, mask = marked(50, 70)
    t = default_train_transform()
    assert len(t.transforms) == 9 and "RandomCopyMove" in repr(t)
    np.random.seed(5)
    a = [t(image=image, mask=mask) for _ in range(8)]
    np.random.seed(5)
    b = [t(image=image, mask=mask) for _ in range(8)]
    for x, y in zip(a, b):
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["mask"], y["mask"])
        assert x["image"].shape[:2] == x["mask"].shape and x["image"].dtype == np.uint8
    assert len({x["image"].shape for x in a}) > 1  # random scale really varies


def test_user_callable_plugs_into_dataset(tmp_path: Path):
    image, mask = marked()
    for sub in ("Tp", "Gt"):
        (tmp_path / sub).mkdir()
    Image.fromarray(image).save(tmp_path / "Tp" / "a.png")
    Image.fromarray(mask).save(tmp_path / "Gt" / "a.png")
    seen = {}

    def user_t(image, mask):  # the albumentations calling convention
        seen["image"], seen["mask"] = (image.shape, image.dtype), (mask.shape, mask.dtype, int(mask.max()))
        return {"image": image[::-1], "mask": mask[::-1]}

    s = ManiDataset(str(tmp_path), is_padding=True, output_size=64, common_transforms=user_t,
                    defer_normalization=True)[0]
    assert seen == {"image": ((40, 60, 3), np.uint8), "mask": ((40, 60), np.uint8, 255)}
    assert torch.equal(s["mask"][0, :40, :60].bool(), torch.from_numpy(mask[::-1].copy() > 0))
    np.random.seed(0)
    s2 = ManiDataset(str(tmp_path), is_padding=True, output_size=64, common_transforms=default_train_transform(),
                     defer_normalization=True)[0]
    h, w = s2["shape"].tolist()
    assert s2["original_shape"].tolist() == [h, w] and s2["mask"].any()


# ---------------------------------------------------------------- robustness wrappers
def test_wrapper_protocol_and_names():
    w = GaussianBlurWrapper([0, 3, 7])
    got = list(w)
    assert [p for p, _ in got] == [0, 3, 7] and got[0][1] is None and callable(got[1][1])
    assert [p for p, _ in w] == [0, 3, 7]  # iterates again
    assert w.name == str(w) == "GaussianBlur"
    assert GaussianNoiseWrapper([3]).name == "GaussianNoise" and str(JpegCompressionWrapper([50])) == "JpegCompression"
    with pytest.raises(ValueError, match="odd"):
        GaussianBlurWrapper([4])
    with pytest.raises(ValueError, match="1..100"):
        JpegCompressionWrapper([120])


def test_user_subclass_of_the_base_wrapper():
    class InvertWrapper(AbstractTransformWrapper):
        def build(self, param):
            return lambda image, mask: {"image": 255 - image, "mask": mask}

    w = InvertWrapper([0, 1])
    assert w.name == "Invert"
    (p0, t0), (p1, t1) = list(w)
    img = np.full((4, 4, 3), 10, np.uint8)
    assert t0 is None and t1(image=img, mask=np.zeros((4, 4), np.uint8))["image"][0, 0, 0] == 245


def test_blur_kernel_size_is_exact():
    # a step edge blurred with a k×k kernel changes exactly the k-1 columns within k//2 of it
    img = np.zeros((31, 31, 3), np.uint8)
    img[:, 15:] = 255
    for k in (3, 7, 11):
        (_, t), = [(p, t) for p, t in GaussianBlurWrapper([k])]
        out = t(image=img, mask=np.zeros((31, 31), np.uint8))["image"][..., 0]
        cols = np.nonzero(out[15] != img[15, :, 0])[0]
        assert cols.min() == 15 - k // 2 and cols.max() == 14 + k // 2


def test_jpeg_quality_exact_and_colour_correct_when_asked():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for q in (50, 90):
        (_, t), = list(JpegCompressionWrapper([q], exact_quality=True, correct_colors=True))
        out = t(image=img, mask=np.zeros((32, 32), np.uint8))["image"]
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=q)
        assert np.array_equal(out, np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        assert not np.array_equal(out, jpeg_roundtrip(img, q - 1))


def test_jpeg_default_is_imdlbenco_quality_draw_and_channel_order():
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    (_, t), = list(JpegCompressionWrapper([60]))

    def cv2_roundtrip(q):  # the RGB array handed to OpenCV as it is (read as BGR)
        return cv2.imdecode(cv2.imencode(".jpg", img, (cv2.IMWRITE_JPEG_QUALITY, q))[1], cv2.IMREAD_UNCHANGED)

    outcomes = {59: cv2_roundtrip(59), 60: cv2_roundtrip(60)}
    np.random.seed(0)
    seen = set()
    for _ in range(10):
        out = t(image=img, mask=np.zeros((32, 32), np.uint8))["image"]
        seen |= {q for q, ref in outcomes.items() if np.array_equal(out, ref)}
    assert seen == {59, 60}


def test_noise_variance_and_seed():
    img = np.full((200, 200, 3), 128, np.uint8)
    (_, t), = list(GaussianNoiseWrapper([16]))
    np.random.seed(3)
    a = t(image=img, mask=np.zeros((200, 200), np.uint8))["image"].astype(float)
    np.random.seed(3)
    b = t(image=img, mask=np.zeros((200, 200), np.uint8))["image"].astype(float)
    assert np.array_equal(a, b)
    assert abs((a - 128).var() - 16) < 1.5
