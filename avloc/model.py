"""The FNAC audio-visual network (METHOD.md §2).

Visual: ResNet-18 trunk (no avgpool/fc) -> 512 x h x w map -> dropout -> 1x1 conv to D ->
L2-normalised at every position. ``visual_stages=3`` (not the published model) stops the trunk
after layer3: a 256-channel map at stride 16, whose cells each see less of the frame. Audio:
ResNet-18 with a 1-channel 7x7/2 stem, global max pooling -> dropout -> linear to D ->
L2-normalised. The map size follows the input size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from avloc.errors import InputError
from avloc.model_config import MAX_DIM, VISUAL_STAGES

_STAGE_CHANNELS = {3: 256, 4: 512}  # channels out of ResNet-18's layer3 / layer4


def init_fnac_(module: nn.Module) -> None:
    """Initialise the non-pretrained parts as the reference does (METHOD.md §2)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, mean=1.0, std=0.02)
            nn.init.zeros_(m.bias)


def _resnet18_trunk(in_channels: int = 3, stages: int = 4) -> nn.Sequential:
    """torchvision ResNet-18 up to layer``stages`` (avgpool and fc dropped); optional 1-channel stem."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return nn.Sequential(*(getattr(net, name) for name in _TRUNK_NAMES[:4 + stages]))


# Sequential indices of the trunk -> torchvision resnet attribute names (for loading weights).
_TRUNK_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def trunk_state_from_resnet(state: dict) -> dict:
    """Map a torchvision resnet18 state dict (fc.* ignored) onto the Sequential trunk's keys."""
    index = {name: str(i) for i, name in enumerate(_TRUNK_NAMES)}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in index:
            out[f"{index[head]}.{rest}"] = value
    return out


def imagenet_resnet18_state() -> dict:
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, socket errors, HTTP errors, corrupt cache
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"cannot get torchvision's ImageNet ResNet-18 weights ({weights.url}: {reason[:120]}); "
            "use visual_weights 'none' or a local file path to a resnet18 state dict"
        ) from exc


def resnet18_state_from_file(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"visual weights must be 'none', 'imagenet' or an existing file; not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read visual weights {path}: {first[:200]}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise InputError(f"visual weights {path} are not a state dict")
    return state


class VisualEncoder(nn.Module):
    def __init__(self, dim: int = 512, dropout: float = 0.9, stages: int = 4):
        super().__init__()
        self.trunk = _resnet18_trunk(3, stages)
        self.dropout = nn.Dropout(p=dropout)
        self.proj = nn.Conv2d(_STAGE_CHANNELS[stages], dim, kernel_size=1)

    def load_trunk(self, state: dict, source: str) -> None:
        kept = {str(i) for i in range(len(self.trunk))}
        mapped = {k: v for k, v in trunk_state_from_resnet(state).items() if k.partition(".")[0] in kept}
        missing, unexpected = self.trunk.load_state_dict(mapped, strict=False)
        if missing or unexpected or not mapped:
            detail = f"missing {len(missing)} keys (e.g. {missing[:1]})" if missing else f"unexpected {unexpected[:1]}"
            raise InputError(f"visual weights {source} do not fit a torchvision resnet18: {detail}")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.dropout(self.trunk(image)))
        return F.normalize(x, dim=1)


class AudioEncoder(nn.Module):
    def __init__(self, dim: int = 512, dropout: float = 0.0):
        super().__init__()
        self.trunk = _resnet18_trunk(1)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.proj = nn.Linear(_STAGE_CHANNELS[4], dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.trunk(spec)).flatten(1)
        return F.normalize(self.proj(self.dropout(x)), dim=1)


class FNACModel(nn.Module):
    """``model(image [B,3,S,S], spec [B,1,F,T]) -> (visual [B,D,h,w], audio [B,D])``, both L2-normalised."""

    def __init__(self, visual_weights: str = "none", dim: int = 512, visual_dropout: float = 0.9, audio_dropout: float = 0.0,
                 visual_stages: int = 4):
        super().__init__()
        if not 1 <= dim <= MAX_DIM:
            raise InputError(f"model dim must be in [1, {MAX_DIM}], got {dim}")
        if visual_stages not in VISUAL_STAGES:
            raise InputError(f"visual_stages must be one of {VISUAL_STAGES}, got {visual_stages!r}")
        for name, p in (("visual_dropout", visual_dropout), ("audio_dropout", audio_dropout)):
            if not 0.0 <= p < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {p}")
        self.dim = int(dim)
        self.visual_dropout = float(visual_dropout)
        self.audio_dropout = float(audio_dropout)
        self.visual_stages = int(visual_stages)
        self.visual = VisualEncoder(self.dim, self.visual_dropout, self.visual_stages)
        self.audio = AudioEncoder(self.dim, self.audio_dropout)

        init_fnac_(self.audio)
        init_fnac_(self.visual.proj)
        weights = str(visual_weights)
        if weights == "none":
            init_fnac_(self.visual.trunk)
        elif weights == "imagenet":
            self.visual.load_trunk(imagenet_resnet18_state(), "imagenet")
        else:
            self.visual.load_trunk(resnet18_state_from_file(Path(weights)), weights)
        self.visual_weights = weights

    def forward(self, image: torch.Tensor, spec: torch.Tensor):
        return self.visual(image), self.audio(spec)

    def model_config(self) -> dict:
        """Keyword arguments that rebuild this architecture (weights come from the checkpoint)."""
        return {"visual_weights": "none", "dim": self.dim, "visual_dropout": self.visual_dropout,
                "audio_dropout": self.audio_dropout, "visual_stages": self.visual_stages}
