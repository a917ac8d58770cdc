"""Train a model (written by `benco init`; run it through train_mymodel.sh, or directly):

    torchrun --nproc_per_node=2 train.py --model MyModel --data_path ... --if_resizing ...
    python train.py --model MyModel --help      # every option, including the model's own

The work is done by IMDLBenCo.engine.train_main. Edit the parts marked TODO.
"""

from mymodel import MyModel  # noqa: F401  TODO: import your model here; the import registers it for --model

from IMDLBenCo.engine import train_main
from IMDLBenCo.evaluation import ImageAUC, ImageF1, PixelAUC, PixelF1, PixelIOU  # noqa: F401
from IMDLBenCo.transforms import (  # noqa: F401
    Compose,
    GaussianBlur,
    HorizontalFlip,
    ImageCompression,
    RandomBrightnessContrast,
    RandomCopyMove,
    RandomInpainting,
    RandomRotate90,
    RandomScale,
    VerticalFlip,
)

# TODO: training augmentation, applied to each image and its mask before pad/resize
# (IMDL-BenCo's default list; use Compose([]) for none)
train_transform = Compose([
    RandomScale(scale_limit=0.2, p=1.0),
    RandomCopyMove(p=0.1),
    RandomInpainting(p=0.1),
    HorizontalFlip(p=0.5),
    VerticalFlip(p=0.5),
    RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=1.0),
    ImageCompression(quality_lower=70, quality_upper=100, p=0.2),
    RandomRotate90(p=0.5),
    GaussianBlur(blur_limit=(3, 7), p=0.2),
])

# TODO: metrics computed on every test set; the first one picks checkpoint-best.pth
evaluators = [
    PixelF1(threshold=0.5, mode="origin"),
    # PixelAUC(), PixelIOU(),
    # ImageF1(threshold=0.5), ImageAUC(),   # need a model with pred_label
]

if __name__ == "__main__":
    train_main(evaluators=evaluators, train_transform=train_transform)
