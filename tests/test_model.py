"""FNACModel: shapes at several input sizes, normalisation, init, dropout, weights sources."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avloc.errors import InputError
from avloc.model import FNACModel

torch.set_num_threads(2)


def _batch(n, size, frames=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=gen), torch.randn(n, 1, 257, frames, generator=gen)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FNACModel(visual_weights="none", dim=64)


@pytest.mark.parametrize("size,hw", [(224, 7), (160, 5)])
def test_forward_backward_shapes_and_normalisation(model, size, hw):
    model.train()
    image, spec = _batch(4, size)
    visual, audio = model(image, spec)
    assert visual.shape == (4, 64, hw, hw)
    assert audio.shape == (4, 64)
    torch.testing.assert_close(visual.norm(dim=1), torch.ones(4, hw, hw))
    torch.testing.assert_close(audio.norm(dim=1), torch.ones(4))
    from avloc.losses import fnac_losses

    out = fnac_losses(visual, audio, impl="torch")
    (out["contrastive"] + out["fns1"] + out["tns"] + out["fns2"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.visual.trunk[0].weight.grad.abs().sum() > 0
    assert model.audio.trunk[0].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_audio_stem_and_pooling(model):
    stem = model.audio.trunk[0]
    assert (stem.in_channels, stem.kernel_size, stem.stride, stem.padding, stem.bias) == (1, (7, 7), (2, 2), (3, 3), None)
    assert isinstance(model.audio.pool, nn.AdaptiveMaxPool2d)
    # spectrograms of other lengths (other sample rates) work too
    model.eval()
    with torch.no_grad():
        _, audio = model(*_batch(2, 96, frames=276))
    assert audio.shape == (2, 64)


def test_init_statistics():
    torch.manual_seed(1)
    m = FNACModel(visual_weights="none", dim=512)
    lin = m.audio.proj
    # trunc_normal_(std=0.01) as the reference calls it: the cut stays at torch's default +-2 (absolute)
    assert lin.weight.abs().max() < 0.1
    assert 0.008 < lin.weight.std() < 0.012
    assert torch.count_nonzero(lin.bias) == 0
    proj = m.visual.proj  # kaiming normal, fan_out, relu: std = sqrt(2 / (out_channels * 1 * 1))
    assert abs(proj.weight.std().item() - math.sqrt(2 / 512)) < 0.1 * math.sqrt(2 / 512)
    conv = m.audio.trunk[4][0].conv1  # 64 -> 64, 3x3
    assert abs(conv.weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.1 * math.sqrt(2 / (64 * 9))
    bns = [mod for mod in m.audio.modules() if isinstance(mod, nn.BatchNorm2d)]
    weights = torch.cat([bn.weight.detach() for bn in bns])
    assert abs(weights.mean().item() - 1.0) < 0.01 and 0.015 < weights.std().item() < 0.025
    assert all(torch.count_nonzero(bn.bias) == 0 for bn in bns)


def test_visual_dropout_only_in_training():
    torch.manual_seed(2)
    m = FNACModel(visual_weights="none", dim=32, visual_dropout=0.9)
    seen = []
    m.visual.dropout.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    image, spec = _batch(2, 64)
    m.train()
    v1, _ = m(image, spec)
    v2, _ = m(image, spec)
    zero_fraction = (seen[0] == 0).float().mean().item()
    assert 0.85 < zero_fraction < 0.95
    assert not torch.allclose(v1, v2)
    m.eval()
    e1, a1 = m(image, spec)
    e2, a2 = m(image, spec)
    assert torch.equal(e1, e2) and torch.equal(a1, a2)
    assert (seen[-1] == 0).float().mean().item() < 0.85  # eval: the trunk's ReLU zeros only


def test_model_config_rebuilds_and_loads_state(tmp_path):
    m = FNACModel(visual_weights="none", dim=48, visual_dropout=0.5, audio_dropout=0.1)
    cfg = m.model_config()
    assert cfg == {"visual_weights": "none", "dim": 48, "visual_dropout": 0.5, "audio_dropout": 0.1, "visual_stages": 4}
    rebuilt = FNACModel(**cfg)
    rebuilt.load_state_dict(m.state_dict())
    m.eval(), rebuilt.eval()
    image, spec = _batch(1, 64)
    for a, b in zip(m(image, spec), rebuilt(image, spec)):
        torch.testing.assert_close(a, b)


def test_visual_weights_from_local_file(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    source = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    m = FNACModel(visual_weights=str(path), dim=16)
    torch.testing.assert_close(m.visual.trunk[0].weight, source.conv1.weight)
    torch.testing.assert_close(m.visual.trunk[7][1].bn2.running_var, source.layer4[1].bn2.running_var)

    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="do not fit a torchvision resnet18"):
        FNACModel(visual_weights=str(bad))
    with pytest.raises(InputError, match="not found"):
        FNACModel(visual_weights=str(tmp_path / "missing.pth"))


def test_imagenet_weights_offline_error(tmp_path, monkeypatch):
    # an empty torch hub cache forces a download, which this machine cannot do
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    try:
        FNACModel(visual_weights="imagenet")
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message
        assert "'none'" in message and "local file" in message and "ImageNet" in message
    else:
        pytest.skip("the ImageNet weights downloaded (this machine has internet): no offline error to check")


def test_three_stage_visual_trunk_gives_a_stride_16_map_and_loads_resnet_weights(tmp_path):
    from torchvision.models import resnet18

    from avloc.model_config import model_config_problems

    torch.manual_seed(4)
    source = resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    m = FNACModel(visual_weights=str(path), dim=16, visual_stages=3).eval()
    assert len(m.visual.trunk) == 7  # stem (4 modules) + layer1..layer3
    torch.testing.assert_close(m.visual.trunk[6][1].bn2.running_var, source.layer3[1].bn2.running_var)
    image, spec = _batch(2, 160)
    visual, audio = m(image, spec)
    assert visual.shape == (2, 16, 10, 10) and audio.shape == (2, 16)
    cfg = m.model_config()
    assert cfg["visual_stages"] == 3 and model_config_problems(cfg) == []
    rebuilt = FNACModel(**cfg).eval()
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(rebuilt(image, spec)[0], visual)
    # checkpoints written before the key existed are four-stage models
    assert model_config_problems({"dim": 8}) == []
    assert model_config_problems({"dim": 8, "visual_stages": 2}) == ["visual_stages must be one of (3, 4), got 2"]


@pytest.mark.parametrize("kwargs", [{"dim": 0}, {"visual_dropout": 1.0}, {"audio_dropout": -0.1}, {"visual_stages": 5}])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        FNACModel(**kwargs)
