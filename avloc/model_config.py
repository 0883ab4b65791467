"""The FNAC model's architecture keys (a checkpoint's ``model_config``) and their valid ranges.

Torch-free, so the training config can check ``dim`` without importing torch, and evaluation can
refuse a checkpoint's config before any layer is allocated.
"""

from __future__ import annotations

VISUAL_STAGES = (3, 4)  # the last ResNet stage of the visual trunk; 4 is the published model
MAX_DIM = 1 << 16  # embedding width; the recipe's is 512, its two projections at this width hold ~270 MB


def model_config_problems(config) -> list:
    """What is wrong with a checkpoint's ``model_config`` (keys, types, ranges), checked before any
    layer is built: a forged or damaged value (dim=2**40) must not reach the allocator."""
    if not isinstance(config, dict):
        return [f"model_config is a {type(config).__name__}, not a mapping"]
    known = ("visual_weights", "dim", "visual_dropout", "audio_dropout", "visual_stages")
    problems = [f"unknown key {k!r}" for k in config if k not in known]
    dim = config.get("dim", 512)
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        problems.append(f"dim must be an integer in [1, {MAX_DIM}], got {dim!r}")
    for name in ("visual_dropout", "audio_dropout"):
        p = config.get(name, 0.0)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            problems.append(f"{name} must be a number in [0, 1), got {p!r}")
    stages = config.get("visual_stages", 4)  # absent in checkpoints written before the key existed
    if isinstance(stages, bool) or stages not in VISUAL_STAGES:
        problems.append(f"visual_stages must be one of {VISUAL_STAGES}, got {stages!r}")
    if not isinstance(config.get("visual_weights", "none"), str):
        problems.append(f"visual_weights must be a string, got {config.get('visual_weights')!r}")
    return problems
