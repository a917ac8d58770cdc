"""The report shows results.json's evidence: intervals, selection label, calibration, per_image.csv (issue 23)."""

from __future__ import annotations

import json

from engine_support import MODEL, MeanF1, base_args, make_json, make_mani


def test_report_shows_intervals_selection_calibration_and_per_image(tmp_path):
    from IMDLBenCo.engine import test_main, train_main
    from IMDLBenCo.evaluation import ImageAUC, PixelF1
    from IMDLBenCo.report import build_report

    train = make_mani(tmp_path / "train", 6, seed=1)
    test_a = make_json(tmp_path, make_mani(tmp_path / "a", 4, seed=2), negatives=2)
    test_b = make_mani(tmp_path / "b", 3, seed=3)
    sets = tmp_path / "sets.json"
    sets.write_text(json.dumps({"setA": str(test_a), "setB": str(test_b)}))
    train_main(base_args(tmp_path, train, test_data_path=sets, epochs=2, test_period=1), evaluators=[MeanF1()],
               train_transform=False)
    out = tmp_path / "eval"
    test_main(["--model", MODEL, "--checkpoint_path", str(tmp_path / "out" / "checkpoint-best.pth"),
               "--test_data_path", str(sets), "--image_size", "32", "--if_resizing", "--device", "cpu",
               "--num_workers", "0", "--output_dir", str(out), "--bootstrap", "100"],
              evaluators=[PixelF1(), ImageAUC()])
    page = build_report([out], out=tmp_path / "report")
    text = page.read_text()
    assert "Results with evidence" in text and "±" in text and "95 %" in text
    assert "best on the test sets (optimistic)" in text and "badge warn" in text and "--val_split" in text
    assert 'href="assets/run0_per_image.csv"' in text and (tmp_path / "report" / "assets" / "run0_per_image.csv").is_file()
    assert "reliability" in text.lower()
    pictures = sorted(p.name for p in (tmp_path / "report" / "assets").glob("*.png"))
    assert any("reliability" in p for p in pictures) and any("intervals" in p for p in pictures)
