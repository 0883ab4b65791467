"""Build an FNACModel from an avloc checkpoint or from a released FNAC / EZ-VSL checkpoint.

The released state dicts name the parts ``imgnet.*`` (torchvision ResNet-18 without avgpool/fc),
``img_proj.*`` (1x1 conv), ``audnet.*`` (the audio ResNet-18) and ``aud_proj.*`` (linear),
optionally under a ``module.`` prefix (DistributedDataParallel) and/or a ``model`` key.
"""

from __future__ import annotations

import torch

from avloc.checkpoint import is_avloc_checkpoint, load_checkpoint
from avloc.errors import InputError

RELEASED_PARTS = {"imgnet": "visual.trunk", "img_proj": "visual.proj", "audnet": "audio.trunk", "aud_proj": "audio.proj"}
TRUNK_PARTS = ("imgnet", "audnet")
_IGNORED_HEADS = ("fc",)  # the reference replaces fc with Identity; some exports still carry it


def _strip_module(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def is_released_state(state) -> bool:
    return isinstance(state, dict) and any(isinstance(k, str) and k.startswith("img_proj.") for k in _strip_module(state))


def released_to_avloc_state(state: dict) -> dict:
    """Rename a released FNAC / EZ-VSL state dict into avloc.model.FNACModel's keys."""
    from avloc.model import trunk_state_from_resnet

    state = _strip_module(state)
    out, unknown = {}, []
    for part, target in RELEASED_PARTS.items():
        sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
        if part in TRUNK_PARTS:
            sub = trunk_state_from_resnet({k: v for k, v in sub.items() if k.split(".")[0] not in _IGNORED_HEADS})
        out.update({f"{target}.{k}": v for k, v in sub.items()})
    unknown = [k for k in state if k.split(".")[0] not in RELEASED_PARTS]
    if unknown:
        raise InputError(f"released checkpoint has keys outside imgnet/img_proj/audnet/aud_proj, e.g. {unknown[0]!r}")
    return out


def _fit_problems(expected: dict, given: dict) -> list:
    problems = []
    for key, value in expected.items():
        if key not in given:
            problems.append(f"missing {key}")
        elif tuple(given[key].shape) != tuple(value.shape):
            problems.append(f"{key} has shape {tuple(given[key].shape)}, the model needs {tuple(value.shape)}")
    problems.extend(f"unexpected {k}" for k in given if k not in expected)
    return problems


def nonfinite_tensors(state: dict) -> list:
    """Names of the floating-point tensors of ``state`` holding NaN or infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _load_into(model, state: dict, source: str) -> None:
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"checkpoint {source}: model state holds non-tensor values")
    bad = nonfinite_tensors(state)
    if bad:
        # every heat map would be NaN and score as a real (zero) result
        raise InputError(f"checkpoint {source} has non-finite weights (NaN or inf in {len(bad)} tensor(s), e.g. "
                         f"{bad[0]}): a diverged or damaged model, refused rather than scored")
    problems = _fit_problems(model.state_dict(), state)
    if problems:
        raise InputError(f"checkpoint {source} does not fit the FNAC model: {problems[0]}"
                         + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    model.load_state_dict(state, strict=True)


def model_from_checkpoint(path, device="cpu"):
    """(FNACModel in eval mode on ``device``, {"kind": "avloc"|"released", "model_config": ...})."""
    from avloc.model import FNACModel
    from avloc.model_config import model_config_problems

    obj = load_checkpoint(path)
    if is_avloc_checkpoint(obj):
        problems = model_config_problems(obj.get("model_config") or {})
        if problems:
            raise InputError(f"checkpoint {path} is refused: its model_config is not one avloc builds: "
                             + "; ".join(problems))
        config = dict(obj.get("model_config") or {})
        config["visual_weights"] = "none"
        try:
            model = FNACModel(**config)
        except TypeError as exc:
            raise InputError(f"checkpoint {path}: model_config does not match FNACModel: {exc}") from exc
        state = obj.get("model")
        if not isinstance(state, dict):
            raise InputError(f"checkpoint {path} has no model state dict")
        _load_into(model, state, str(path))
        kind = "avloc"
    else:
        state = obj
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            state = obj["model"]
        elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            state = obj["state_dict"]
        if not is_released_state(state):
            raise InputError(f"{path} is neither an avloc checkpoint nor a released FNAC/EZ-VSL state dict "
                             "(imgnet.*, img_proj.*, audnet.*, aud_proj.*)")
        mapped = released_to_avloc_state(state)
        proj = mapped.get("visual.proj.weight")
        if proj is None or proj.ndim != 4:
            raise InputError(f"released checkpoint {path} has no 1x1 conv img_proj.weight")
        config = {"visual_weights": "none", "dim": int(proj.shape[0])}
        model = FNACModel(**config)
        _load_into(model, mapped, str(path))
        kind = "released"
    model.eval().to(device)
    return model, {"kind": kind, "model_config": model.model_config()}
