"""Test one checkpoint under attacks of growing strength (written by `benco init`; run it
through test_robust_mymodel.sh). Results: robustness.json and TensorBoard in --output_dir.

The work is done by IMDLBenCo.engine.test_robust_main. Edit the parts marked TODO.
"""

from mymodel import MyModel  # noqa: F401  TODO: import your model here; the import registers it for --model

from IMDLBenCo.engine import test_robust_main
from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelAUC, PixelF1, PixelIOU  # noqa: F401
from IMDLBenCo.transforms import GaussianBlurWrapper, GaussianNoiseWrapper, JpegCompressionWrapper

# TODO: metrics computed under every attack
evaluators = [
    PixelF1(threshold=0.5, mode="origin"),
    # PixelAUC(), ImageF1(threshold=0.5), ImageAUC(),
]

# TODO: the attacks and their strengths (0 = no attack). A wrapper of your own plugs in: any
# object that yields (strength, transform) pairs, transform(image=, mask=) -> {"image", "mask"}
# (see IMDLBenCo.transforms.AbstractTransformWrapper).
robustness_list = [
    GaussianBlurWrapper([0, 3, 7, 11, 15, 19, 23]),     # kernel size
    GaussianNoiseWrapper([3, 7, 11, 15, 19, 23]),       # variance, in 0-255 units
    JpegCompressionWrapper([50, 60, 70, 80, 90, 100]),  # JPEG quality
]

if __name__ == "__main__":
    test_robust_main(evaluators=evaluators, attacks=robustness_list)
