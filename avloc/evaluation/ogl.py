"""Object-guided localisation (OGL, from EZ-VSL): fuse the audio-visual map with an object prior.

The prior is a separate ImageNet ResNet-18's layer-4 map, averaged over channels in absolute
value, upsampled bilinearly (align_corners=True) and min-max normalised; the fused map is
minmax(alpha * AV + (1 - alpha) * OBJ) with the AV map already upsampled and min-max normalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from avloc import metrics
from avloc.errors import InputError

OGL_ALPHA = 0.4


class ObjectSaliency(torch.nn.Module):
    """ResNet-18 up to layer4 -> mean |.| over channels: [B, 3, S, S] -> [B, h, w]."""

    def __init__(self, trunk: torch.nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.trunk(image).abs().mean(dim=1)


def build_object_saliency(weights: Optional[Path] = None) -> ObjectSaliency:
    """The ImageNet ResNet-18 from a local state-dict file, else from torchvision's weights (cache or download)."""
    from avloc.model import VisualEncoder

    encoder = VisualEncoder(dim=1, dropout=0.0)  # only its trunk is used
    if weights is not None:
        from avloc.model import resnet18_state_from_file

        encoder.load_trunk(resnet18_state_from_file(Path(weights)), str(weights))
    else:
        from avloc.model import imagenet_resnet18_state

        try:
            encoder.load_trunk(imagenet_resnet18_state(), "imagenet")
        except InputError as exc:
            cause = exc.__cause__ or exc
            reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:120]
            raise InputError(f"--ogl needs ImageNet ResNet-18 weights and torchvision could not provide them "
                             f"({reason}); pass --ogl-weights FILE (a torchvision resnet18 state dict)") from exc
    return ObjectSaliency(encoder.trunk).eval()


def object_maps(raw: torch.Tensor) -> torch.Tensor:
    """[B, h, w] object saliency -> [B, 224, 224] upsampled (bilinear, align_corners=True), min-max."""
    return metrics.minmax_normalise(metrics.upsample_maps(raw, "bilinear"))


def fuse(av_normalised: torch.Tensor, obj_normalised: torch.Tensor, alpha: float = OGL_ALPHA) -> torch.Tensor:
    return metrics.minmax_normalise(alpha * av_normalised + (1.0 - alpha) * obj_normalised)
