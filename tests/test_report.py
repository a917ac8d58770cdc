"""``benco report``: HTML from fabricated run folders (the files of docs/ARCHITECTURE.md), rendered
in headless Chromium when it is installed."""

from __future__ import annotations

import html as htmlmod
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from IMDLBenCo.cli import main as benco
from IMDLBenCo.report import RunFolderError, build_report, load_run
from IMDLBenCo.report.gallery import pixel_f1, score_predictions

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = {
    "pixel_f1": "per-image F1 at threshold 0.5, averaged over manipulated images",
    "image_auc": "dataset-level ROC AUC of pred_label over all images",
}


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _write_lines(path: Path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_train_run(root: Path, f1s=(0.2, 0.5, 0.7), model: str = "DemoNet") -> Path:
    """A train folder: 3 epochs tested on two sets, 30 logged steps, two checkpoints."""
    root.mkdir(parents=True)
    _write_json(root / "config.json", {
        "script": "train", "args": {"model": model, "epochs": 3, "lr": 1e-3, "image_size": 64, "if_resizing": True},
        "model_kwargs": {"width": 8}, "env": {"PyTorch version": "2.x", "CUDA devices": "none"}, "started": "2026-01-01T00:00:00",
    })
    _write_json(root / "metric_definitions.json", DEFINITIONS)
    rows = []
    for epoch, f1 in enumerate(f1s):
        row = {"epoch": epoch, "train_lr": 1e-3 / (epoch + 1), "train_backward_loss": 1.0 / (epoch + 1)}
        row.update({"test_pixel_f1": f1, "test_image_auc": 0.6 + 0.1 * epoch,
                    "test_setA/pixel_f1": f1, "test_setA/image_auc": 0.6 + 0.1 * epoch,
                    "test_setB/pixel_f1": f1 / 2, "test_setB/image_auc": 0.5})
        rows.append(row)
    _write_lines(root / "log.txt", rows)
    _write_lines(root / "train_steps.jsonl", [
        {"step": s, "epoch": s // 10, "lr": 1e-3 * (1 - s / 30), "backward_loss": 1.0 / (1 + s), "seg_loss": 0.5 / (1 + s)} for s in range(30)
    ])
    for name in ("checkpoint-2.pth", "checkpoint-best.pth"):
        (root / name).write_bytes(b"")
    return root


def make_robust_run(root: Path) -> Path:
    root.mkdir(parents=True)
    _write_json(root / "config.json", {"script": "test_robust", "args": {"model": "DemoNet"}, "env": {}, "started": "x"})
    _write_json(root / "metric_definitions.json", DEFINITIONS)
    results = []
    for attack, params in (("GaussianBlur", [None, 3, 7]), ("JpegCompression", [None, 90, 50])):
        for i, p in enumerate(params):
            results.append({"attack": attack, "param": p, "metrics": {"pixel_f1": 0.8 - 0.2 * i, "image_auc": 0.9 - 0.1 * i}})
    _write_json(root / "robustness.json", {"checkpoint": "checkpoint-best.pth", "dataset": "synthetic/test", "results": results})
    return root


def make_predictions_run(root: Path, data: Path) -> Path:
    """A save-images folder over a tiny dataset: one perfect, one empty, one half-right prediction, one authentic."""
    root.mkdir(parents=True)
    (data / "Tp").mkdir(parents=True)
    (data / "Gt").mkdir(parents=True)
    (root / "pred").mkdir()
    rng = np.random.default_rng(0)
    entries = []
    gt = np.zeros((40, 48), np.uint8)
    gt[10:30, 12:36] = 255
    half = gt.copy()
    half[:, 24:] = 0
    for name, pred, authentic in (("perfect", gt, False), ("missed", np.zeros_like(gt), False), ("half", half, False), ("clean", np.zeros_like(gt), True)):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(data / "Tp" / f"{name}.png")
        mask_path = "Negative"
        if not authentic:
            Image.fromarray(gt).save(data / "Gt" / f"{name}.png")
            mask_path = str(data / "Gt" / f"{name}.png")
        Image.fromarray(pred).save(root / "pred" / f"{name}.png")
        entries.append({"name": f"{name}.png", "image_path": str(data / "Tp" / f"{name}.png"), "mask_path": mask_path,
                        "pred_path": f"pred/{name}.png", "label": 0 if authentic else 1, "pred_label": 0.1 if name in ("missed", "clean") else 0.9})
    _write_json(root / "predictions.json", entries)
    _write_json(root / "pred_label.json", {e["name"]: e["pred_label"] for e in entries})
    _write_json(root / "complexity.json", {"model": "DemoNet", "input_size": [1, 3, 64, 64], "params": 12345, "trainable_params": 12345, "flops": 2.5e7, "macs": 1.25e7})
    return root


def _img_sources(page: str):
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)


def _assert_self_contained(html_path: Path) -> str:
    """No URL that would reach the network, and every picture exists next to the page."""
    page = html_path.read_text(encoding="utf-8")
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page), "the report must not reference network resources"
    assert "<script" not in page and "@import" not in page and "url(" not in page
    sources = _img_sources(page)
    assert sources
    for src in sources:
        assert (html_path.parent / htmlmod.unescape(src)).is_file(), src
    return page


def test_report_on_train_folder(tmp_path):
    run = make_train_run(tmp_path / "train_run")
    out = build_report([run], out=tmp_path / "rep")
    assert out == tmp_path / "rep" / "index.html"
    page = _assert_self_contained(out)
    # both test sets, with the last epoch's value and the definition beside the metric
    assert "setA" in page and "setB" in page
    assert "0.7000" in page and "0.3500" in page
    assert DEFINITIONS["pixel_f1"] in page and DEFINITIONS["image_auc"] in page
    # the per-set keys are used, so the mean over sets ("test_pixel_f1") does not appear as a set
    assert load_run(run).metrics_over_epochs().keys() == {"setA", "setB"}
    # the training plot (losses + lr over steps) and one curve per test set
    assert any("training" in s for s in _img_sources(page))
    assert sum("metrics" in s for s in _img_sources(page)) == 2
    assert "checkpoint-best.pth" in page
    # configuration and environment
    assert "if_resizing" in page and "CUDA devices" in page


def test_report_on_robustness_folder(tmp_path):
    run = make_robust_run(tmp_path / "robust")
    out = build_report([run], out=tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    page = _assert_self_contained(out)
    assert "GaussianBlur" in page and "JpegCompression" in page
    plots = [s for s in _img_sources(page) if "robust" in s]
    assert len(plots) == 2 and all(s.startswith("r_files/") for s in plots)
    # metrics down, clean + strengths across (blur: clean 0.9, 3 → 0.8, 7 → 0.7 for image_auc)
    blur = page.split("<h3>GaussianBlur</h3>")[1].split("</table>")[0]
    assert "<th>clean</th><th>3</th><th>7</th>" in blur
    row = next(r for r in blur.split("<tr>") if "image_auc" in r)
    assert re.search(r'class="num">0\.9000</td><td class="num">0\.8000</td><td class="num">0\.7000</td>', row)


def test_report_on_two_runs_side_by_side(tmp_path):
    a = make_train_run(tmp_path / "a" / "run", f1s=(0.1, 0.3, 0.4))
    b = make_train_run(tmp_path / "b" / "run", f1s=(0.2, 0.6, 0.9), model="Other")
    out = build_report([a, b], out=tmp_path / "cmp")
    page = _assert_self_contained(out)
    assert "Side by side" in page
    # same folder names: the labels fall back to the full paths
    assert str(a) in page and str(b) in page
    table = page.split('id="compare"')[1].split("</table>")[0]
    row = next(r for r in table.split("<tr>") if "setA" in r and "pixel_f1" in r)
    assert re.search(r'class="num">0\.4000<', row) and re.search(r'class="num best">0\.9000<', row)
    assert any("compare_pixel_f1" in s for s in _img_sources(page))


def test_report_gallery_ranks_by_pixel_f1(tmp_path):
    run = make_predictions_run(tmp_path / "pred_run", tmp_path / "data")
    out = build_report([run], out=tmp_path / "g", n_samples=4)
    page = _assert_self_contained(out)
    rows = page.split('class="gallery"')[1].split("<tr>")[2:]
    tags = [re.search(r'class="tag (\w+)"', r).group(1) for r in rows]
    names = [re.search(r"<b>([^<]+)</b>", r).group(1) for r in rows]
    assert tags[0] == "worst" and names[0] == "missed.png" and "pixel F1 0.000" in rows[0]
    assert "best" in tags and names[tags.index("best")] == "perfect.png" and "pixel F1 1.000" in rows[tags.index("best")]
    assert "half.png" in names and "pixel F1 0.667" in page
    assert tags[-1] == "authentic" and names[-1] == "clean.png"
    # the wrongly labelled one is marked, and accuracy counts it: 3 of 4 right
    assert 'class="bad">authentic (0.10)' in rows[0]
    assert "image-level accuracy 0.7500 (3/4)" in page
    # four pictures per manipulated row (image, ground truth, prediction, thresholded); an empty
    # thresholded mask is captioned (black on black would read as a missing picture otherwise)
    assert rows[0].count("<img") == 4
    assert '<div class="cap">no pixel above 0.5</div>' in rows[0]
    assert "12.35 K" in page  # complexity: parameters


def test_gallery_scores_a_prediction_of_another_size_at_the_mask_size(tmp_path):
    run = make_predictions_run(tmp_path / "pred_run", tmp_path / "data")
    for name in ("perfect", "half"):  # saved at twice the mask's 48x40 (W x H): resized back before scoring
        pred = Image.open(run / "pred" / f"{name}.png")
        pred.resize((96, 80), Image.NEAREST).save(run / "pred" / f"{name}.png")
    f1 = {item.name: item.f1 for item in score_predictions(load_run(run))}
    assert f1["perfect.png"] == pytest.approx(1.0) and f1["half.png"] == pytest.approx(2 / 3, abs=0.02)
    assert f1["missed.png"] == 0.0 and f1["clean.png"] is None  # an authentic image has no F1


def test_pixel_f1_is_the_evaluators():
    """The gallery's F1 is PixelF1's: 2TP/(2TP+FP+FN) with pred > threshold (strictly); an image
    without manipulated pixels is not scored (NaN), as the metric tables do."""
    gt = np.zeros((4, 4), bool)
    gt[:2] = True
    pred = np.zeros((4, 4), np.float32)
    pred[:1] = 0.9
    pred[3, 0] = 0.9
    pred[1, 0] = 0.5  # exactly at the threshold: not positive
    # tp=4, fp=1, fn=4 -> 8/13
    assert pixel_f1(pred, gt) == pytest.approx(8 / 13)
    assert np.isnan(pixel_f1(np.zeros((2, 2), np.float32), np.zeros((2, 2), bool)))


def test_cli_report_and_errors(tmp_path, capsys):
    run = make_train_run(tmp_path / "t")
    assert benco(["report", str(run)]) == 0
    assert (run / "report" / "index.html").is_file()
    assert str((run / "report" / "index.html").resolve()) in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert benco(["report", str(empty)]) == 2
    assert "holds none of the files a run writes" in capsys.readouterr().err
    (run / "log.txt").write_text('{"epoch": 0}\nnot json\n')
    with pytest.raises(RunFolderError, match=r"log\.txt, line 2"):
        load_run(run)


# ---------------------------------------------------------------------------- headless Chromium
CHECK_SCRIPT = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push((e.target && e.target.src) ? 'failed to load ' + e.target.src : String(e.message));
}, true);
var _ce = console.error; console.error = function () { window.__errors.push(Array.from(arguments).join(' ')); _ce.apply(console, arguments); };
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (i) { return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}; });
  var pre = document.createElement('pre'); pre.id = '__check';
  pre.textContent = JSON.stringify({images: imgs, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y --no-install-recommends chromium; .ci/run does this)")


def _chromium_cmd(exe: str, profile: Path):
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]


def render_check(html_path: Path, screenshot: Path, tmp_path: Path) -> dict:
    """Load ``html_path`` in headless Chromium; return {images, errors, console} and write a screenshot."""
    exe = _chromium()
    probe = html_path.with_name("__render_check.html")
    page = html_path.read_text(encoding="utf-8")
    probe.write_text(page.replace("<head>", "<head>" + CHECK_SCRIPT, 1), encoding="utf-8")
    try:
        done = subprocess.run(_chromium_cmd(exe, tmp_path / "profile") + ["--dump-dom", probe.as_uri()],
                              capture_output=True, text=True, timeout=90)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="__check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium did not render the page (rc {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(htmlmod.unescape(found.group(1)))
    result["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(_chromium_cmd(exe, tmp_path / "profile2") + ["--window-size=1280,2200", f"--screenshot={screenshot}", html_path.as_uri()],
                   capture_output=True, text=True, timeout=90)
    return result


def test_report_renders_in_headless_chromium(tmp_path):
    runs = [make_train_run(tmp_path / "train"), make_robust_run(tmp_path / "robust"),
            make_predictions_run(tmp_path / "pred", tmp_path / "data")]
    out = build_report(runs, out=tmp_path / "report")
    shot = REPO_ROOT / "test-artifacts" / "report_screenshot.png"
    if shot.exists():
        shot.unlink()
    result = render_check(out, shot, tmp_path)
    assert result["images"], "no images found in the rendered page"
    broken = [i["src"] for i in result["images"] if not i["ok"]]
    assert not broken, f"images that did not load: {broken}"
    assert len(result["images"]) == len(_img_sources(out.read_text()))
    assert not result["errors"] and not result["console"], (result["errors"], result["console"])
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as im:
        assert im.size == (1280, 2200)


def test_report_reads_imdlbenco_style_log(tmp_path):
    """An IMDL-BenCo output folder (log.txt only, mean test keys, no config) still gives a report."""
    run = tmp_path / "old_run"
    run.mkdir()
    _write_lines(run / "log.txt", [
        {"train_lr": 1e-4, "train_loss": 0.9, "epoch": 0},
        {"train_lr": 1e-4, "train_loss": 0.7, "test_pixel-level F1": 0.31, "epoch": 1},
        {"train_lr": 5e-5, "train_loss": 0.5, "test_pixel-level F1": 0.42, "epoch": 2},
    ])
    out = build_report([run], out=tmp_path / "rep")
    page = _assert_self_contained(out)
    assert load_run(run).metrics_over_epochs() == {"test": {"pixel-level F1": [(1.0, 0.31), (2.0, 0.42)]}}
    assert "0.4200" in page and "no config.json in this folder" in page
    assert any("training" in s for s in _img_sources(page))  # losses per epoch when no train_steps.jsonl


def test_report_polish(tmp_path):
    """The tutorial run's report: NaN metrics shown with the reason; every attack compared with
    the clean image (also one without a strength 0 of its own); one name per test set; error bounds
    not ranked; processes from the environment; a thresholded mask that is all white is captioned."""
    runs = []
    root = tmp_path / "train"
    root.mkdir()
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps({"synth_test": str(tmp_path / "data" / "test.json")}))
    _write_json(root / "config.json", {"script": "train", "args": {"model": "M", "world_size": 1, "test_data_path": str(sets)},
                                       "env": {"world_size": 2, "device": "cpu"}, "started": "x"})
    (root / "log.txt").write_text(json.dumps({"epoch": 0, "test_synth_test/image_auc": float("nan"),
                                              "test_synth_test/pixel_f1": 0.5,
                                              "test_synth_test/pixel_auc_pooled_error_bound": 0.001}) + "\n")
    runs.append(root)
    other = tmp_path / "other"
    other.mkdir()
    _write_json(other / "config.json", {"script": "test", "args": {"model": "M"}, "env": {}, "started": "x"})
    (other / "log.txt").write_text(json.dumps({"epoch": 0, "test_synth_test/pixel_f1": 0.2,
                                               "test_synth_test/pixel_auc_pooled_error_bound": 0.0001}) + "\n")
    runs.append(other)
    rob = tmp_path / "robust"
    rob.mkdir()
    _write_json(rob / "config.json", {"script": "test_robust", "args": {"model": "M"}, "env": {}, "started": "x"})
    _write_json(rob / "robustness.json", {"checkpoint": "c.pth", "dataset": str(tmp_path / "data" / "test.json"), "results": [
        {"attack": "GaussianBlur", "param": 0, "metrics": {"pixel_f1": 0.5}},
        {"attack": "GaussianBlur", "param": 3, "metrics": {"pixel_f1": 0.4}},
        {"attack": "JpegCompression", "param": 50, "metrics": {"pixel_f1": 0.3}},
    ]})
    runs.append(rob)
    page = _assert_self_contained(build_report(runs, out=tmp_path / "rep"))
    assert "nan" in page and "undefined on this set" in page
    jpeg = page.split("<h3>JpegCompression</h3>")[1].split("</table>")[0]
    assert "<th>clean</th><th>50</th>" in jpeg and re.search(r'class="num">0\.5000</td><td class="num">0\.3000<', jpeg)
    assert "(test set synth_test)" in page and "test.json" not in page.split('id="compare"')[1].split("</table>")[0]
    compare = page.split('id="compare"')[1].split("</table>")[0]
    bound = next(r for r in compare.split("<tr>") if "error_bound" in r)
    assert "best" not in bound
    assert "<td>processes</td><td>2</td>" in page and "<td>world_size</td><td>1</td>" not in page


FIT_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.querySelectorAll('table.gallery img')).map(function (i) {
    var r = i.getBoundingClientRect(); return {src: i.getAttribute('src'), right: r.right, width: r.width, ok: i.complete && i.naturalWidth > 0};
  });
  var pre = document.createElement('pre'); pre.id = '__fit';
  pre.textContent = JSON.stringify({inner: window.innerWidth, scroll: document.documentElement.scrollWidth, images: imgs});
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.parametrize("width", [1280, 900])
def test_gallery_with_cam_maps_fits_the_window(tmp_path, width):
    """Five pictures per row (image, ground truth, prediction, thresholded, CAM overlay) and a long
    sample name: the gallery scales to the page instead of running past the window's edge."""
    exe = _chromium()
    run = make_predictions_run(tmp_path / "pred", tmp_path / "data")
    (run / "cam").mkdir()
    entries = json.loads((run / "predictions.json").read_text())
    for e in entries:  # a wide CAM overlay beside every prediction, and unbreakable long names
        stem = Path(e["pred_path"]).stem
        Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(run / "cam" / f"{stem}_overlay.jpg")
        e["name"] = "CASIA2_Tp_S_NNN_S_N_ani20009_ani20009_02052_" + e["name"] * 3
    _write_json(run / "predictions.json", entries)
    out = build_report([run], out=tmp_path / "report")
    probe = out.with_name("__fit.html")
    probe.write_text(out.read_text(encoding="utf-8").replace("<head>", "<head>" + FIT_SCRIPT, 1), encoding="utf-8")
    done = subprocess.run(_chromium_cmd(exe, tmp_path / "profile") + [f"--window-size={width},900", "--dump-dom",
                                                                       probe.as_uri()],
                          capture_output=True, text=True, timeout=90)
    found = re.search(r'<pre id="__fit">(.*?)</pre>', done.stdout, re.S)
    assert found, f"Chromium did not render the page (rc {done.returncode}): {done.stderr[-2000:]}"
    fit = json.loads(htmlmod.unescape(found.group(1)))
    cams = [i for i in fit["images"] if i["src"].endswith("_cam.png")]
    assert len(cams) == len(entries) and all(i["ok"] for i in fit["images"])
    assert fit["scroll"] <= fit["inner"], fit  # nothing to scroll sideways
    assert max(i["right"] for i in fit["images"]) <= fit["inner"]
    assert min(i["width"] for i in fit["images"]) >= 60  # scaled, not collapsed


def test_side_by_side_columns_say_what_was_tested(tmp_path):
    """Columns name the script, the split and the checkpoint, not the folder: a training run's
    column is its validation during training."""
    train = make_train_run(tmp_path / "train")
    test = tmp_path / "test"
    test.mkdir()
    _write_json(test / "config.json", {"script": "test", "args": {"model": "DemoNet", "checkpoint_path": str(train) + "/"},
                                       "env": {}, "started": "x"})
    _write_lines(test / "log.txt", [{"epoch": e, "test_held_out/pixel_f1": 0.1 * e} for e in (0, 2)])
    single = tmp_path / "untrained"
    single.mkdir()
    _write_json(single / "config.json", {"script": "test", "args": {"model": "DemoNet",
                                                                    "checkpoint_path": str(single / "checkpoint-0.pth")},
                                         "env": {}, "started": "x"})
    _write_lines(single / "log.txt", [{"epoch": 0, "test_held_out/pixel_f1": 0.05}])
    page = build_report([train, test, single], out=tmp_path / "rep").read_text()
    header = page.split('id="compare"')[1].split("</thead>")[0]
    columns = re.findall(r"<th>([^<]*)</th>", header)
    assert columns[2:5] == ["train.py: validation during training (setA, setB)",
                            "test.py: held_out, last checkpoint of train/ (epoch 2)",
                            "test.py: held_out, checkpoint-0.pth of untrained/"], columns
    cards = re.findall(r'class="k">([^<]+)<', page)
    assert "pixel_f1 · setA · train.py validation (train/)" in cards
