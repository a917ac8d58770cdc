"""Save every predicted mask (8-bit PNG at the image's original size, in pred/) and every
predicted label (pred_label.json) of a dataset (written by `benco init`; run it through
test_save_image_mymodel.sh). --test_data_path may be a plain folder of images without masks.

The work is done by IMDLBenCo.engine.save_images_main.
"""

import mymodel  # noqa: F401  TODO: the module that defines your model (importing it registers every model in it for --model)

from IMDLBenCo.engine import save_images_main

if __name__ == "__main__":
    save_images_main()
