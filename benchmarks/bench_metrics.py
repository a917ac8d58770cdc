"""Speed of the pixel and image evaluators against scikit-learn and torchmetrics, in the same run.

200 predictions of 512x512 (3/4 manipulated with elliptic blob masks, 1/4 authentic) with
continuous float32 scores (a noisy sigmoid, so nearly every score is distinct; ``--quantised``
rounds them to 8 bits) in batches of 8, through PixelF1, PixelIOU, PixelAccuracy, PixelAUC
(origin) and the image metrics. scikit-learn computes the same per-image values (``f1_score``,
``jaccard_score``, ``accuracy_score``, ``roc_auc_score`` per manipulated image, then the mean) on
the first ``--sklearn-images`` images (it needs 0.1-0.6 s per image), and our evaluators run on
the same images to check the values. torchmetrics (the metric library a reader will ask about)
computes the same per-image pixel values on all images: ``BinaryF1Score``, ``BinaryJaccardIndex``
and ``BinaryAccuracy`` with ``multidim_average="samplewise"`` on each batch, ``BinaryAUROC``
(exact, ``thresholds=None``) per manipulated image. Prints ms/image for each evaluator and the ratios,
and PixelAUC alone with each CPU key sort (numpy's np.sort, OpenCV's cv2.sort, the O(n) radix
sort; IMDLBenCo/evaluation/_prepare.py picks the fastest per process) against scikit-learn's
``roc_auc_score``, so a machine without numpy's SIMD sort shows what each gives: the whole
evaluator (checks, exact AUC, histograms) and the exact per-image AUC alone (pack, sort, count),
and the whole evaluator against IMDL-BenCo's own per-image AUC timed in the same run.

    .venv/bin/python benchmarks/bench_metrics.py [--images 200] [--size 512] [--batch 8]
        [--sklearn-images 24] [--device cpu] [--quantised] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def make_data(n: int, size: int, seed: int, quantised: bool):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        if i % 4 == 3:
            continue  # authentic
        for _ in range(1 + i % 3):
            cy, cx = torch.randint(0, size, (2,), generator=g).tolist()
            ry, rx = torch.randint(size // 16, size // 4, (2,), generator=g).tolist()
            masks[i, 0] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    masks = masks.float()
    preds = torch.sigmoid((masks * 2 - 1) * 1.5 + torch.randn(n, 1, size, size, generator=g) * 1.5)
    if quantised:
        preds = torch.round(preds * 255) / 255
    labels = (masks.flatten(1).amax(1) > 0).long()
    scores = (torch.rand(n, generator=g) * 0.6 + labels * 0.4).clamp(0, 1)
    return preds, masks, labels, scores


def _add(acc, t0: float, c0: float) -> None:
    acc[0] += time.perf_counter() - t0
    acc[1] += time.process_time() - c0


def run_ours(evaluators, preds, masks, labels, scores, batch: int, device: str) -> dict[str, float]:
    """Seconds spent in each evaluator's update + compute over all batches."""
    from IMDLBenCo.evaluation import share_batch_cache

    spent = {type(e).__name__: [0.0, 0.0] for e in evaluators}  # [wall s, CPU s]
    for e in evaluators:
        e.reset()
    share_batch_cache(evaluators)  # as the engine's evaluation loop does
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    batches = []
    for s in range(0, preds.shape[0], batch):
        # fresh tensors per batch, on the device, like a test loop's outputs
        batches.append(({"pred_mask": preds[s:s + batch].to(device), "pred_label": scores[s:s + batch].to(device)},
                        {"mask": masks[s:s + batch].to(device), "label": labels[s:s + batch].to(device)}))
    sync()
    for out, bt in batches:
        for e in evaluators:
            t0, c0 = time.perf_counter(), time.process_time()
            e.update(out, bt)
            sync()
            _add(spent[type(e).__name__], t0, c0)
    results = {}
    for e in evaluators:
        t0, c0 = time.perf_counter(), time.process_time()
        results.update(e.compute())
        _add(spent[type(e).__name__], t0, c0)
    return spent, results


def run_reference_auc(preds, masks, repeat: int) -> list[float]:
    """Best-of-``repeat`` [wall s, CPU s] of IMDL-BenCo 0.1.45's per-image pixel AUC, as its
    documentation describes it (the baseline of issue 25): flatten the image, sort the scores
    descending with ``torch.argsort``, cumulative true/false positives, ``torch.trapz`` of TPR over
    FPR; a Python loop over the images."""
    best = [float("inf")] * 2
    for _ in range(repeat):
        spent = [0.0, 0.0]
        for i in range(preds.shape[0]):
            t0, c0 = time.perf_counter(), time.process_time()
            score, label = preds[i].flatten(), masks[i].flatten().float()
            order = torch.argsort(score, descending=True)
            label = label[order]
            tps, fps = torch.cumsum(label, 0), torch.cumsum(1 - label, 0)
            n_pos, n_neg = label.sum(), (1 - label).sum()
            if n_pos > 0 and n_neg > 0:
                torch.trapz(tps / n_pos, fps / n_neg)
            _add(spent, t0, c0)
        best = [min(a, b) for a, b in zip(spent, best)]
    return best


def run_key_sorts(preds, masks, batch: int, repeat: int) -> dict[str, list[float]]:
    """Best-of-``repeat`` [wall s, CPU s] with each CPU key sort of PixelAUC alone (update + compute), and
    of the exact per-image AUC itself (``PixelBatch.auc()``: pack, sort, count; no checks, no histograms)."""
    from IMDLBenCo.evaluation import PixelAUC, _prepare

    chosen = _prepare.key_sort_name()
    out: dict[str, list[float]] = {}
    try:
        for name in _prepare.KEY_SORTS:
            _prepare._KEY_SORT["name"] = name
            try:
                _prepare.sort_keys_inplace(np.arange(3, 0, -1, dtype=np.int32))
            except Exception:  # noqa: BLE001 - e.g. no OpenCV
                continue
            best = [float("inf")] * 4
            for _ in range(repeat):
                spent, _ = run_ours([PixelAUC()], preds, masks, torch.zeros(preds.shape[0]), torch.zeros(preds.shape[0]),
                                    batch, "cpu")
                kernel = [0.0, 0.0]
                for s in range(0, preds.shape[0], batch):
                    pb = _prepare.PixelBatch(preds[s:s + batch], masks[s:s + batch], None, "bench")
                    t0, c0 = time.perf_counter(), time.process_time()
                    pb.auc()
                    _add(kernel, t0, c0)
                best = [min(a, b) for a, b in zip(spent["PixelAUC"] + kernel, best)]
            out[name] = best
    finally:
        _prepare._KEY_SORT["name"] = chosen
    return out


def run_sklearn(preds, masks, labels, scores):
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        f1_score,
        jaccard_score,
        roc_auc_score,
    )

    spent = {k: [0.0, 0.0] for k in ("PixelF1", "PixelIOU", "PixelAccuracy", "PixelAUC", "image (5 metrics)")}
    vals: dict[str, list[float]] = {k: [] for k in ("PixelF1", "PixelIOU", "PixelAccuracy", "PixelAUC")}
    fns = {"PixelF1": f1_score, "PixelIOU": jaccard_score, "PixelAccuracy": accuracy_score}
    for i in range(preds.shape[0]):
        y = masks[i].reshape(-1).numpy() > 0.5
        if not y.any():
            continue
        p = preds[i].reshape(-1).numpy()
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            vals[name].append(fn(y, p > 0.5))
            _add(spent[name], t0, c0)
        t0, c0 = time.perf_counter(), time.process_time()
        vals["PixelAUC"].append(roc_auc_score(y, p))
        _add(spent["PixelAUC"], t0, c0)
    y, s = labels.numpy(), scores.numpy()
    t0, c0 = time.perf_counter(), time.process_time()
    img = {"image_f1": f1_score(y, s > 0.5), "image_auc": roc_auc_score(y, s), "image_accuracy": accuracy_score(y, s > 0.5),
           "image_ap": average_precision_score(y, s), "image_balanced_accuracy": balanced_accuracy_score(y, s > 0.5)}
    _add(spent["image (5 metrics)"], t0, c0)
    means = {"pixel_f1": np.mean(vals["PixelF1"]), "pixel_iou": np.mean(vals["PixelIOU"]),
             "pixel_accuracy": np.mean(vals["PixelAccuracy"]), "pixel_auc": np.mean(vals["PixelAUC"]), **img}
    return spent, means


def run_torchmetrics(preds, masks, batch: int, device: str):
    """Per-image pixel F1 / IoU / accuracy / AUC with torchmetrics, mean over manipulated images."""
    from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryF1Score, BinaryJaccardIndex

    spent = {k: [0.0, 0.0] for k in ("PixelF1", "PixelIOU", "PixelAccuracy", "PixelAUC")}
    vals: dict[str, list[float]] = {k: [] for k in spent}
    samplewise = {"PixelF1": BinaryF1Score(multidim_average="samplewise").to(device),
                  "PixelAccuracy": BinaryAccuracy(multidim_average="samplewise").to(device)}
    jaccard = BinaryJaccardIndex().to(device)  # no samplewise mode: one call per image
    auroc = BinaryAUROC(thresholds=None).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for s in range(0, preds.shape[0], batch):
        p = preds[s:s + batch].to(device)[:, 0]
        y = masks[s:s + batch].to(device)[:, 0].long()
        manipulated = y.flatten(1).amax(1) > 0
        for name, metric in samplewise.items():
            t0, c0 = time.perf_counter(), time.process_time()
            per_image = metric(p, y)
            sync()
            _add(spent[name], t0, c0)
            vals[name] += per_image[manipulated].tolist()
        for i in torch.nonzero(manipulated).flatten().tolist():
            t0, c0 = time.perf_counter(), time.process_time()
            vals["PixelIOU"].append(float(jaccard(p[i], y[i])))
            _add(spent["PixelIOU"], t0, c0)
            t0, c0 = time.perf_counter(), time.process_time()
            vals["PixelAUC"].append(float(auroc(p[i].flatten(), y[i].flatten())))
            _add(spent["PixelAUC"], t0, c0)
    means = {"pixel_f1": np.mean(vals["PixelF1"]), "pixel_iou": np.mean(vals["PixelIOU"]),
             "pixel_accuracy": np.mean(vals["PixelAccuracy"]), "pixel_auc": np.mean(vals["PixelAUC"])}
    return spent, means


class _Stream:
    """``n`` synthetic test batches made on the fly (constant memory): images, masks, labels, names."""

    def __init__(self, n: int, size: int, batch: int) -> None:
        self.n, self.size, self.batch = n, size, batch

    def __len__(self) -> int:
        return -(-self.n // self.batch)

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        for start in range(0, self.n, self.batch):
            b = min(self.batch, self.n - start)
            masks = torch.zeros(b, 1, self.size, self.size)
            for j in range(b):
                if (start + j) % 4 != 3:  # 3/4 manipulated
                    y, x = torch.randint(0, self.size // 2, (2,), generator=g).tolist()
                    masks[j, :, y:y + self.size // 3, x:x + self.size // 3] = 1
            image = torch.rand(b, 3, self.size, self.size, generator=g) * 0.2 + masks * 0.6
            yield {"image": image, "mask": masks, "label": (masks.flatten(1).amax(1) > 0).long(),
                   "name": [f"img{start + j:06d}.png" for j in range(b)]}


class _TinyNet(torch.nn.Module):
    """One 3x3 convolution: a test pass as cheap as a model can make it, so the bootstrap's share
    of it is the largest it can be (a real model makes the share smaller)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, image, mask, label, **kw):
        logits = self.conv(image)
        return {"backward_loss": logits.mean(), "pred_mask": torch.sigmoid(logits),
                "pred_label": torch.sigmoid(logits.flatten(1).mean(1)), "visual_loss": {}, "visual_image": {}}


def run_bootstrap_cost(n: int, size: int, resamples: int, batch: int) -> None:
    """The test pass of ``test.py`` (model forward, the default metric PixelF1 plus ImageAUC, the
    per-image rows and calibration) timed once, and the ``resamples`` bootstrap intervals computed
    from its states timed on their own (the added cost), with the memory the bootstrap reads
    (per-image states: it grows with the images, not the pixels)."""
    from IMDLBenCo.engine.evaluate import measure
    from IMDLBenCo.engine.runtime import setup_runtime
    from IMDLBenCo.evaluation import ImageAUC, PixelF1
    from IMDLBenCo.evaluation.bootstrap import bootstrap_intervals

    torch.manual_seed(0)
    model, runtime = _TinyNet(), setup_runtime("cpu")
    print(f"test pass: {n} images of {size}x{size}, a one-convolution model (the cheapest pass, so the largest "
          f"share for the bootstrap), PixelF1 + ImageAUC + per-image rows, batch {batch}, {resamples} resamples; "
          f"load average {os.getloadavg()[0]:.1f}")
    evs = [PixelF1(), ImageAUC()]
    started, cpu = time.perf_counter(), time.process_time()
    measure(model, _Stream(n, size, batch), evs, runtime, bootstrap=0)
    pass_wall, pass_cpu = time.perf_counter() - started, time.process_time() - cpu
    pairs = [(ev, ev.compute_with_states()[1]) for ev in evs]
    started, cpu = time.perf_counter(), time.process_time()
    intervals = bootstrap_intervals(pairs, n, resamples, 0)
    boot_wall, boot_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"  test pass {pass_wall:.1f} s wall ({pass_cpu:.1f} s CPU); intervals of {len(intervals)} values "
          f"{boot_wall:.2f} s wall ({boot_cpu:.2f} s CPU) = {100 * boot_cpu / pass_cpu:.1f} % of the pass's CPU time "
          f"(target <= 10 %)")
    for count, side in ((n // 2, size), (n, size), (n, size * 2)):
        evs = [PixelF1(), ImageAUC()]
        for batch_dict in _Stream(count, side, batch):
            out = {"pred_mask": batch_dict["mask"] * 0.8 + 0.1, "pred_label": batch_dict["mask"].flatten(1).mean(1)}
            for ev in evs:
                ev.update(out, batch_dict)
        pairs = [(ev, ev.compute_with_states()[1]) for ev in evs]
        state_bytes = sum(t.numel() * t.element_size() for _, st in pairs for t in st.values())
        print(f"  {count:>6} images of {side}x{side}: the bootstrap reads {state_bytes / 2**20:6.2f} MB of per-image "
              f"states")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sklearn-images", type=int, default=24)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quantised", action="store_true", help="8-bit quantised predictions (k/255)")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the data; the best is shown")
    ap.add_argument("--bootstrap-images", type=int, default=0,
                    help="also time the bootstrap intervals of results.json on a test pass of this many images "
                         "(e.g. 10000) and exit; 0 (default): skip")
    ap.add_argument("--bootstrap-size", type=int, default=128, help="image side of that test pass (default 128)")
    ap.add_argument("--bootstrap-resamples", type=int, default=1000)
    args = ap.parse_args()
    if args.bootstrap_images:
        run_bootstrap_cost(args.bootstrap_images, args.bootstrap_size, args.bootstrap_resamples, args.batch)
        return

    from IMDLBenCo.evaluation import (
        ImageAccuracy,
        ImageAP,
        ImageAUC,
        ImageBalancedAccuracy,
        ImageF1,
        PixelAccuracy,
        PixelAUC,
        PixelF1,
        PixelIOU,
    )

    def evaluators():
        return [PixelF1(), PixelIOU(), PixelAccuracy(), PixelAUC(), ImageF1(), ImageAUC(), ImageAccuracy(),
                ImageAP(), ImageBalancedAccuracy()]

    preds, masks, labels, scores = make_data(args.images, args.size, 0, args.quantised)
    n = preds.shape[0]
    print(f"data: {n} predictions of {args.size}x{args.size} ({int(labels.sum())} manipulated), "
          f"{'8-bit quantised' if args.quantised else 'continuous float32'} scores, batch {args.batch}, "
          f"device {args.device}, torch threads {torch.get_num_threads()}")

    run_ours(evaluators(), preds[:16], masks[:16], labels[:16], scores[:16], args.batch, args.device)  # warm-up
    best: dict[str, list] = {}
    for _ in range(args.repeat):
        spent, _ = run_ours(evaluators(), preds, masks, labels, scores, args.batch, args.device)
        best = {k: [min(a, b) for a, b in zip(v, best.get(k, [float("inf")] * 2))] for k, v in spent.items()}

    k = min(args.sklearn_images, n)
    sk_spent, sk_vals = run_sklearn(preds[:k], masks[:k], labels[:k], scores[:k])
    _, our_vals = run_ours(evaluators(), preds[:k], masks[:k], labels[:k], scores[:k], args.batch, args.device)

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; wall = elapsed time, CPU = process "
          f"CPU time (all threads; robust when other processes share the cores). Ours: best of {args.repeat}.")
    print(f"\n{'evaluator':<20}{'ours wall':>10}{'ours CPU':>10}{'sk wall':>10}{'sk CPU':>10}"
          f"{'ratio wall':>12}{'ratio CPU':>11}   (ms/image)")

    def row(name: str, ours: list, sk: list) -> None:
        o = [x / n * 1e3 for x in ours]
        r = [x / k * 1e3 for x in sk]
        print(f"{name:<20}{o[0]:>10.3f}{o[1]:>10.3f}{r[0]:>10.2f}{r[1]:>10.2f}{r[0] / o[0]:>11.0f}x{r[1] / o[1]:>10.0f}x")

    pix = ["PixelF1", "PixelIOU", "PixelAccuracy", "PixelAUC"]
    for name in pix:
        row(name, best[name], sk_spent[name])
    total = lambda d, names: [sum(d[p][i] for p in names) for i in (0, 1)]  # noqa: E731
    row("4 pixel metrics", total(best, pix), total(sk_spent, pix))
    img_names = ["ImageF1", "ImageAUC", "ImageAccuracy", "ImageAP", "ImageBalancedAccuracy"]
    row("5 image metrics", total(best, img_names), sk_spent["image (5 metrics)"])

    try:
        tm_spent, tm_vals = run_torchmetrics(preds, masks, args.batch, args.device)
    except ImportError:
        tm_spent = None
        print("\n(torchmetrics is not installed: pip install torchmetrics for its column)")
    if tm_spent is not None:
        print(f"\n{'evaluator':<20}{'ours wall':>10}{'ours CPU':>10}{'tm wall':>10}{'tm CPU':>10}"
              f"{'ratio wall':>12}{'ratio CPU':>11}   (ms/image, torchmetrics on all {n} images)")
        for name in pix:
            o = [x / n * 1e3 for x in best[name]]
            t = [x / n * 1e3 for x in tm_spent[name]]
            print(f"{name:<20}{o[0]:>10.3f}{o[1]:>10.3f}{t[0]:>10.2f}{t[1]:>10.2f}{t[0] / o[0]:>11.1f}x{t[1] / o[1]:>10.1f}x")
        o, t = total(best, pix), total(tm_spent, pix)
        print(f"{'4 pixel metrics':<20}{o[0] / n * 1e3:>10.3f}{o[1] / n * 1e3:>10.3f}{t[0] / n * 1e3:>10.2f}"
              f"{t[1] / n * 1e3:>10.2f}{t[0] / o[0]:>11.1f}x{t[1] / o[1]:>10.1f}x")
        _, ours_all = run_ours(evaluators(), preds, masks, labels, scores, args.batch, args.device)
        print("values on all images (ours vs torchmetrics): " + ", ".join(
            f"{key} |diff| {abs(ours_all[key] - ref):.1e}" for key, ref in tm_vals.items()))

    if args.device == "cpu":
        from IMDLBenCo.evaluation import _prepare

        sorts = run_key_sorts(preds, masks, args.batch, args.repeat)
        sk = [x / k * 1e3 for x in sk_spent["PixelAUC"]]
        print(f"\nPixelAUC by CPU key sort (this process uses {_prepare.key_sort_name()!r}, the fastest of its "
              f"timing probe), against scikit-learn's roc_auc_score (ms/image):")
        print(f"{'key sort':<20}{'ours wall':>10}{'ours CPU':>10}{'sk wall':>10}{'sk CPU':>10}{'ratio wall':>12}"
              f"{'ratio CPU':>11}   {'AUC alone wall':>14}{'CPU':>8}{'ratio wall':>12}{'ratio CPU':>11}")
        for name, spent in sorts.items():
            o = [x / n * 1e3 for x in spent]
            print(f"{name:<20}{o[0]:>10.3f}{o[1]:>10.3f}{sk[0]:>10.2f}{sk[1]:>10.2f}{sk[0] / o[0]:>11.1f}x"
                  f"{sk[1] / o[1]:>10.1f}x   {o[2]:>14.3f}{o[3]:>8.3f}{sk[0] / o[2]:>11.1f}x{sk[1] / o[3]:>10.1f}x")
        ref = [x / n * 1e3 for x in run_reference_auc(preds, masks, args.repeat)]
        print(f"\nPixelAUC against IMDL-BenCo 0.1.45's own per-image AUC (torch.argsort + cumsum + trapz, "
              f"{ref[0]:.2f} ms wall / {ref[1]:.2f} ms CPU per image, timed in this run), the whole evaluator:")
        for name, spent in sorts.items():
            o = [x / n * 1e3 for x in spent]
            print(f"  {name:<18}{o[0]:>8.3f} ms wall {ref[0] / o[0]:>6.1f}x   {o[1]:>8.3f} ms CPU {ref[1] / o[1]:>6.1f}x"
                  f"{'   (this process)' if name == _prepare.key_sort_name() else ''}")

    print(f"\nvalues on the first {k} images (ours vs scikit-learn):")
    worst = 0.0
    for key, ref in sk_vals.items():
        diff = abs(our_vals[key] - ref)
        worst = max(worst, diff)
        print(f"  {key:<26}{our_vals[key]:.12f}  {ref:.12f}  |diff| {diff:.2e}")
    print(f"max |diff| = {worst:.2e} ({'OK' if worst <= 1e-6 else 'MISMATCH'})")
    if args.device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(torch.device(args.device)) / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
