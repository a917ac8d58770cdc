"""The engine: training and evaluation loops behind the five scripts that ``benco init`` writes.

``train_main``, ``test_main``, ``test_robust_main``, ``save_images_main``, ``complexity_main``
and ``cam_main`` (``test_cam.py`` / ``benco cam``) take the script's command line (``argv``,
default ``sys.argv[1:]``) plus the editable lists of the generated scripts (evaluators, augmentation, attacks), and write the run
folder described in docs/ARCHITECTURE.md. They run as ``python script.py`` and under
``torchrun --nproc_per_node=N`` (CUDA + nccl when present, CPU + gloo otherwise).
"""

from ..errors import ModelOutputError
from ..outputs import check_model_output
from .cam import cam_main
from .checkpoint import find_checkpoints, load_checkpoint, save_checkpoint
from .complexity import complexity_main
from .errors import exit_cleanly_on_user_errors
from .evaluate_checkpoints import test_main
from .robustness import test_robust_main
from .save_images import save_images_main
from .train import NonFiniteLossError, train_main

# From the command line, a mistake in the user's input ends with one message, not a traceback.
train_main = exit_cleanly_on_user_errors(train_main)
test_main = exit_cleanly_on_user_errors(test_main)
test_robust_main = exit_cleanly_on_user_errors(test_robust_main)
save_images_main = exit_cleanly_on_user_errors(save_images_main)
complexity_main = exit_cleanly_on_user_errors(complexity_main)
cam_main = exit_cleanly_on_user_errors(cam_main)

# names starting with "test" that a user's test module may import: not tests for pytest
for _entry in (test_main, test_robust_main):
    _entry.__test__ = False  # type: ignore[attr-defined]

__all__ = [
    "train_main",
    "test_main",
    "test_robust_main",
    "save_images_main",
    "complexity_main",
    "cam_main",
    "check_model_output",
    "ModelOutputError",
    "NonFiniteLossError",
    "load_checkpoint",
    "save_checkpoint",
    "find_checkpoints",
]
