"""Class-activation maps (Grad-CAM and relatives) of your model on a dataset (written by
`benco init`; run it through test_cam_mymodel.sh): cam/<name>.png (grey heat map at the image's
original size), cam/<name>_overlay.jpg (the heat map over the image) and cam.json. With the
--output_dir of test_save_images.py, cam/ sits next to pred/ and `benco report` shows both.

--target_layer NAME (a name from model.named_modules(); default: the last 4-D feature map the
target depends on), --cam_method gradcam|gradcam++|xgradcam|eigencam|layercam|hirescam,
--cam_target mask|label, --reshape_tokens auto|off|K (ViT token outputs). Needs the grad-cam
package: pip install grad-cam.

The work is done by IMDLBenCo.engine.cam_main.
"""

import mymodel  # noqa: F401  TODO: the module that defines your model (importing it registers every model in it for --model)

from IMDLBenCo.engine import cam_main

if __name__ == "__main__":
    cam_main()
