"""Your model. `benco init` wrote this example; replace it with your own network.

Contract (checked by the scripts, with a message saying what is wrong):
- register the class with @MODELS.register_module(); pass its name to --model;
- the parameters of __init__ become command-line options of every script, by name and typed
  from their annotations (here --MyModel_Customized_param 3 --pre_trained_weights w.pth);
- forward() receives the batch by keyword: image (B,3,H,W), mask (B,1,H,W), label (B,), and
  more (shape, original_shape, name, shape_mask, edge_mask, ...) through **kwargs;
- forward() computes its own losses and returns the dict below: pred_mask holds probabilities
  in [0,1] (apply sigmoid), pred_label has shape (B,) (or is None without a label head).
"""

import torch
import torch.nn as nn

from IMDLBenCo.registry import MODELS


@MODELS.register_module()
class MyModel(nn.Module):
    def __init__(self, MyModel_Customized_param: int, pre_trained_weights: str) -> None:
        """The parameters become command-line options of the same name and type."""
        super().__init__()
        # Not used by this example: they show how options reach the model.
        self.MyModel_Customized_param = MyModel_Customized_param
        self.pre_trained_weights = pre_trained_weights

        # a single convolution: one logit per pixel
        self.demo_layer = nn.Conv2d(in_channels=3, out_channels=1, kernel_size=3, stride=1, padding=1)
        self.loss_func_a = nn.BCEWithLogitsLoss()

    def forward(self, image, mask, label, *args, **kwargs):
        logits = self.demo_layer(image)

        # losses are computed inside forward()
        loss_a = self.loss_func_a(logits, mask)
        pred_mask = torch.sigmoid(logits)                    # probabilities in [0, 1]
        loss_b = torch.abs(torch.mean(pred_mask - mask))
        combined_loss = loss_a + loss_b

        pred_label = pred_mask.flatten(1).amax(dim=1)        # (B,): one probability per image

        output_dict = {
            # the loss to back-propagate
            "backward_loss": combined_loss,
            # (B,1,H,W) probabilities: every pixel-level metric uses this
            "pred_mask": pred_mask,
            # (B,) probabilities: every image-level metric uses this (None if the model has no label head)
            "pred_label": pred_label,
            # ---- for TensorBoard and log.txt ----
            # scalars plotted per step and averaged per epoch; name them as you like
            "visual_loss": {
                "predict_loss": combined_loss,
                "loss_a": loss_a,
                "I am loss_b :)": loss_b,
            },
            # (B,C,H,W) tensors shown as pictures; name them as you like
            "visual_image": {
                "pred_mask": pred_mask,
                "reverse_mask": 1 - mask,
            },
        }
        return output_dict


if __name__ == "__main__":
    print(MODELS)
    model = MyModel(MyModel_Customized_param=1, pre_trained_weights="")
    out = model(torch.randn(2, 3, 64, 64), torch.zeros(2, 1, 64, 64), torch.zeros(2))
    print(out["pred_mask"].shape, out["pred_label"].shape)  # (2, 1, 64, 64) and (2,)
