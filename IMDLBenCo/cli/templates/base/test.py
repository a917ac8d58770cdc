"""Test every checkpoint-<epoch>.pth of a folder on every set of test_datasets.json
(written by `benco init`; run it through test_mymodel.sh). Results: log.txt, summary.json,
summary.csv and TensorBoard curves over epochs in --output_dir.

The work is done by IMDLBenCo.engine.test_main. Edit the parts marked TODO.
"""

from mymodel import MyModel  # noqa: F401  TODO: import your model here; the import registers it for --model

from IMDLBenCo.engine import test_main
from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelAUC, PixelF1, PixelIOU  # noqa: F401

# TODO: metrics computed on every test set
evaluators = [
    PixelF1(threshold=0.5, mode="origin"),
    # PixelAUC(), PixelIOU(),
    # ImageF1(threshold=0.5), ImageAUC(),   # need a model with pred_label
]

if __name__ == "__main__":
    test_main(evaluators=evaluators)
