"""ObjectFormer: RGB and high-frequency patch tokens refined by learnable object prototypes.

Wang et al., "ObjectFormer for Image Manipulation Detection and Localization", CVPR 2022. No
official code exists; this follows IMDL-BenCo's from-scratch reproduction (0.1.45), whose
arithmetic it keeps:

* two ViT-style patch embeddings (``encoder_net_r`` on the RGB image, ``encoder_net_q`` on a
  high-frequency image: an FFT-based "DCT", coefficients with ``|c| <= 0.5`` zeroed, inverse);
  the 2L tokens (RGB first) get a learnable position embedding;
* ``num_layers`` encoder/decoder pairs: the encoder lets ``num_prototypes`` learnable object
  prototypes attend to the tokens, the decoder lets the tokens attend to those object features,
  and the boundary-sensitive contextual module (BCIM) scales every position by its mean cosine
  similarity to its 3x3 neighbourhood;
* the tokens are read back as a (2C, h, w) map (RGB and frequency channels interleaved), upsampled
  x2 and passed through three 3x3 convolutions, each followed by another x2 bilinear upsampling
  (h * 16 = the input size for patch 16); BCE-with-logits against the mask.

Beyond IMDL-BenCo (which only runs at ``input_size``): attention uses the key length of its own
inputs (the reference reshapes keys with the query length, which only works while
``num_prototypes == 2 * (input_size / patch_size) ** 2``), the position embedding is resampled
bicubically for another input grid, BCIM accepts non-square grids, and the head is sized from
``embedding_dim``. With the defaults at 224 the computation is the reference's.
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import MODELS

logger = logging.getLogger(__name__)

__all__ = ["ObjectFormer", "HighFrequencyExtractor", "BCIM", "vit_to_object_former_state_dict"]

#: heads of every attention layer (IMDL-BenCo fixes 12, ViT-B's)
NUM_HEADS = 12


# ---------------------------------------------------------------------------------- frequency view
def _fft_dct(x: torch.Tensor) -> torch.Tensor:
    """IMDL-BenCo's DCT along the last axis: real part of the FFT of ``[x, reversed x]``, first N
    bins (no DCT-II phase factor or scaling; kept because trained weights expect it)."""
    n = x.shape[-1]
    spectrum = torch.fft.fft(torch.cat([x, x.flip(dims=[-1])], dim=-1), dim=-1)
    return spectrum[..., :n].real


def _fft_idct(x: torch.Tensor) -> torch.Tensor:
    """The matching inverse: inverse FFT of the even extension of length 2N - 2, first N values."""
    n = x.shape[-1]
    extended = torch.cat([x, x[..., 1:n - 1].flip(dims=[-1])], dim=-1)
    return torch.fft.ifft(extended, dim=-1)[..., :n].real


def _fft_dct_2d(x: torch.Tensor) -> torch.Tensor:
    return _fft_dct(_fft_dct(x).transpose(-1, -2)).transpose(-1, -2)


def _fft_idct_2d(x: torch.Tensor) -> torch.Tensor:
    return _fft_idct(_fft_idct(x).transpose(-1, -2)).transpose(-1, -2)


class HighFrequencyExtractor(nn.Module):
    """Keeps the (FFT-)DCT coefficients with magnitude above ``alpha`` and transforms back.

    Computed in float32 even under autocast (FFTs in half precision lose the small coefficients
    and need power-of-two sizes on CUDA)."""

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            coeffs = _fft_dct_2d(x.float())
            kept = coeffs * (coeffs.abs() > self.alpha)
            return _fft_idct_2d(kept).to(x.dtype)


# ---------------------------------------------------------------------------------- blocks
class CrossAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections (the keys IMDL-BenCo's checkpoints
    hold); ``query`` and ``key``/``value`` may have different lengths."""

    def __init__(self, dim: int, num_heads: int = NUM_HEADS, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"ObjectFormer: embedding_dim {dim} must be divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        b, n, c = query.shape
        q = self._heads(self.q(query)) * self.scale  # scale before the product, as the reference
        k = self._heads(self.k(key))
        v = self._heads(self.v(value))
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)


def _mlp(dim: int, mlp_ratio: float = 4.0) -> nn.Module:
    from timm.layers import Mlp  # fc1 -> GELU -> fc2, the reference's module

    return Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))


class ObjectEncoder(nn.Module):
    """Learnable object prototypes (queries) attend to the patch tokens."""

    def __init__(self, dim: int = 768, num_prototypes: int = 392) -> None:
        super().__init__()
        self.object_prototypes = nn.Parameter(torch.randn(num_prototypes, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        query = self.norm1(self.object_prototypes).unsqueeze(0).expand(tokens.shape[0], -1, -1)
        keys = self.norm1(tokens)  # one LayerNorm for prototypes and tokens, as the reference
        objects = query + self.attn(query, keys, keys)
        return objects + self.mlp(self.norm2(objects))


class PatchDecoder(nn.Module):
    """Patch tokens attend to the object features (residual on the normalised tokens)."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim)

    def forward(self, tokens: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
        tokens = self.norm1(tokens)
        objects = self.norm1(objects)
        out = tokens + self.attn(tokens, objects, objects)
        return out + self.mlp(self.norm2(out))


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 2L, C) tokens -> (B, 2C, h, w) map, read the reference's way: channel ``2c + k`` is
    channel ``c`` of branch ``k`` (0 = RGB, 1 = frequency)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid[0], grid[1])


def map_to_tokens(fmap: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`tokens_to_map`."""
    b, c2, h, w = fmap.shape
    return fmap.reshape(b, c2 // 2, 2 * h * w).transpose(1, 2)


class BCIM(nn.Module):
    """Boundary-sensitive contextual incoherence modeling: every position of the token map is
    scaled by its mean cosine similarity to its ``window_size``² neighbourhood (zero padding),
    divided once more by ``window_size``² as in IMDL-BenCo."""

    def __init__(self, window_size: int = 3) -> None:
        super().__init__()
        self.window_size = window_size

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        fmap = tokens_to_map(tokens, grid)
        b, c2 = fmap.shape[:2]
        k = self.window_size
        neighbours = F.unfold(fmap, kernel_size=k, padding=k // 2).reshape(b, c2, k * k, h, w)
        similarity = F.cosine_similarity(fmap.unsqueeze(2), neighbours, dim=1)  # (B, k², h, w)
        weight = similarity.mean(dim=1, keepdim=True) / (k * k)
        return map_to_tokens(fmap * weight)


class EncoderDecoder(nn.Module):
    def __init__(self, num_prototypes: int, dim: int) -> None:
        super().__init__()
        self.encoder = ObjectEncoder(dim, num_prototypes=num_prototypes)
        self.decoder = PatchDecoder(dim)
        self.bcim = BCIM()

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.bcim(self.decoder(tokens, self.encoder(tokens)), grid)


# ---------------------------------------------------------------------------------- weights
_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.(.+)$")


def vit_to_object_former_state_dict(sd: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """ViT-B/16 weights -> ObjectFormer keys (the re-keying of IMDL-BenCo issue #41).

    Accepts the processed file of that issue (``blocks.i.attn.{q,k,v}.*``) and a plain timm
    ViT checkpoint (fused ``blocks.i.attn.qkv.*``, split here). ViT block ``i`` initialises both
    the encoder and the decoder of layer ``i``; the patch embedding initialises both patch
    embeddings. ``pos_embed`` is returned as is, under ``pos_embed`` (see ``_load_pretrained``).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        match = _BLOCK_KEY.match(key)
        if match:
            layer, rest = int(match.group(1)), match.group(2)
            if layer >= num_layers:
                continue
            if rest.startswith("attn.qkv."):
                suffix = rest[len("attn.qkv."):]
                pieces = dict(zip("qkv", value.chunk(3, dim=0)))
                renamed = {f"attn.{n}.{suffix}": t for n, t in pieces.items()}
            else:
                renamed = {rest: value}
            for sub in ("encoder", "decoder"):
                for name, t in renamed.items():
                    out[f"encoder_decoders.{layer}.{sub}.{name}"] = t
        elif key.startswith("patch_embed.proj."):
            suffix = key[len("patch_embed.proj."):]
            out[f"encoder_net_r.0.{suffix}"] = value
            out[f"encoder_net_q.0.{suffix}"] = value
        elif key == "pos_embed":
            out["pos_embed"] = value
    return out


def _resize_grid(pos: torch.Tensor, old: tuple[int, int], new: tuple[int, int]) -> torch.Tensor:
    """(1, old_h*old_w, C) position embedding -> (1, new_h*new_w, C), bicubic."""
    if tuple(old) == tuple(new):
        return pos
    c = pos.shape[-1]
    grid = pos.reshape(1, old[0], old[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=new, mode="bicubic", align_corners=False).to(pos.dtype)
    return grid.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], c)


# ---------------------------------------------------------------------------------- model
@MODELS.register_module()
class ObjectFormer(nn.Module):
    """ObjectFormer (CVPR 2022), IMDL-BenCo's reproduction.

    Args:
        patch_size: side of the square patches of both patch embeddings.
        input_size: the image size the position embedding is built for (224 for published
            checkpoints). Images of another size (a multiple of ``patch_size``, not necessarily
            square) work: the embedding is resampled bicubically to their grid.
        num_prototypes: number of learnable object prototypes per encoder layer.
        embedding_dim: token width (divisible by the 12 attention heads).
        num_layers: number of encoder/decoder pairs.
        init_weight_path: local ViT-B/16 file (IMDL-BenCo issue #41's
            ``processed_model_weights.pth``, or a plain timm ``vit_base_patch16_224`` state dict);
            nothing is downloaded. Empty: random initialisation and one warning.
    """

    def __init__(self, patch_size: int = 16, input_size: int = 224, num_prototypes: int = 392,
                 embedding_dim: int = 768, num_layers: int = 8, init_weight_path: str | None = None) -> None:
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"ObjectFormer: --input_size {input_size} is not a multiple of --patch_size {patch_size}")
        self.patch_size = patch_size
        self.input_size = input_size
        self.grid = (input_size // patch_size, input_size // patch_size)
        dim = embedding_dim
        self.encoder_net_r = nn.Sequential(nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size))
        self.encoder_net_q = nn.Sequential(nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size))
        self.high_freq_extractor = HighFrequencyExtractor(alpha=0.5)
        self.encoder_decoders = nn.ModuleList([EncoderDecoder(num_prototypes, dim) for _ in range(num_layers)])
        # no activations between these convolutions, as in IMDL-BenCo (1536 -> 768 -> 384 -> 1 at 768)
        self.localization = nn.Sequential(
            nn.Conv2d(2 * dim, dim, kernel_size=3, padding=1),
            nn.Conv2d(dim, dim // 2, kernel_size=3, padding=1),
            nn.Conv2d(dim // 2, 1, kernel_size=3, padding=1),
        )
        self.pos_encoding = nn.Parameter(torch.randn(1, 2 * self.grid[0] * self.grid[1], dim) * 0.02)
        if init_weight_path:
            self._load_pretrained(init_weight_path)
        else:
            from ...modules.pretrained import warn_random_init

            warn_random_init("ObjectFormer", "--init_weight_path is empty")

    def _load_pretrained(self, path: str) -> None:
        from ...modules.pretrained import load_pretrained, read_state_dict

        raw = read_state_dict(path)
        sd = vit_to_object_former_state_dict(raw, len(self.encoder_decoders))
        if not sd:
            raise ValueError(f"{path}: no ViT keys (blocks.N.*, patch_embed.proj.*, pos_embed) found; "
                             f"--init_weight_path expects ViT-B/16 weights (IMDL-BenCo issue #41)")
        pos = sd.pop("pos_embed", None)
        if pos is not None:
            sd["pos_encoding"] = self._adapt_pos_embed(pos, path, class_slot="cls_token" in raw)
        load_pretrained(self, sd)

    def _adapt_pos_embed(self, pos: torch.Tensor, path: str, class_slot: bool) -> torch.Tensor:
        """A file's ``pos_embed`` -> our (1, 2L, C): a plain ViT one (the file has a class token;
        1 + m² tokens: the class slot is dropped and the grid, resampled, serves both branches),
        or 2 * m² tokens (issue #41's layout; each branch resampled when the grid differs)."""
        n, target = pos.shape[1], self.grid
        side = int(round((n - 1) ** 0.5))
        half = int(round((n / 2) ** 0.5))
        vit_layout = side * side == n - 1
        if vit_layout and (class_slot or 2 * half * half != n):
            grid = _resize_grid(pos[:, 1:], (side, side), target)
            return torch.cat([grid, grid], dim=1)
        if 2 * half * half == n:
            parts = [_resize_grid(p, (half, half), target) for p in pos.chunk(2, dim=1)]
            return torch.cat(parts, dim=1)
        raise ValueError(f"{path}: pos_embed has {n} tokens; expected 2*m*m (ObjectFormer) or 1+m*m (ViT)")

    def _position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        if tuple(grid) == self.grid:
            return self.pos_encoding
        rgb, freq = self.pos_encoding.chunk(2, dim=1)
        return torch.cat([_resize_grid(rgb, self.grid, grid), _resize_grid(freq, self.grid, grid)], dim=1)

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, 2C, H/p, W/p) refined token map."""
        x_rgb = self.encoder_net_r(image)
        x_freq = self.encoder_net_q(self.high_freq_extractor(image))
        b, c, h, w = x_rgb.shape
        tokens = torch.cat([x_rgb.reshape(b, c, h * w).transpose(1, 2),
                            x_freq.reshape(b, c, h * w).transpose(1, 2)], dim=1)
        tokens = tokens + self._position_embedding((h, w))
        for layer in self.encoder_decoders:
            tokens = layer(tokens, (h, w))
        return tokens_to_map(tokens, (h, w))

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None, label: torch.Tensor | None = None,
                *args, **kwargs) -> dict[str, object]:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"ObjectFormer: expected image (B, 3, H, W), got {tuple(image.shape)}")
        size = tuple(image.shape[-2:])
        if size[0] % self.patch_size or size[1] % self.patch_size:
            raise ValueError(f"ObjectFormer: image size {size[0]}x{size[1]} is not a multiple of the patch size "
                             f"{self.patch_size}; choose --image_size divisible by {self.patch_size}")
        logits = F.interpolate(self.forward_features(image), scale_factor=2, mode="bilinear", align_corners=False)
        for conv in self.localization:
            logits = F.interpolate(conv(logits), scale_factor=2, mode="bilinear", align_corners=False)
        if tuple(logits.shape[-2:]) != size:  # patch sizes other than 16
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        pred_mask = torch.sigmoid(logits)
        out: dict[str, object] = {"pred_mask": pred_mask, "pred_label": None,
                                  "visual_image": {"pred_mask": pred_mask}}
        zero = logits.new_zeros((), dtype=torch.float32)
        if mask is None:
            out.update(backward_loss=zero, visual_loss={"predict_loss": zero, "lable_loss": zero})
            return out
        loss = F.binary_cross_entropy_with_logits(logits.float(), mask.float())
        # "lable_loss" (sic, always 0: no label head) is IMDL-BenCo's curve name, kept for comparable logs
        out.update(backward_loss=loss, visual_loss={"predict_loss": loss.detach(), "lable_loss": zero})
        return out
