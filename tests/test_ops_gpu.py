"""Triton kernels on a real GPU at real shapes, fp32 and bf16 (skipped without CUDA).

Tolerances per dtype: fp32 kernels use exact fp32 products (no TF32), so logits match the
reference to 1e-5 relative; gradients are compared by relative norm because at these sizes a
few (n, m) pairs have two positions within rounding of each other, and the argmax (hence the
position that receives the gradient) may legitimately differ there. bf16 inputs are compared
against the fp32 reference on the same bf16-rounded values (fp32 accumulation in the kernel).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu

# bf16 "loss"/"grad" vs the fp32 reference: the diagonal maps (hence the hard foreground mask) are
# computed in the input dtype, so a few mask entries may flip; triton vs torch on the same bf16
# inputs is held to "same_dtype".
TOL = {torch.float32: {"logits": 1e-5, "grad": 1e-3, "loss": 1e-5, "same_dtype": 1e-4},
       torch.bfloat16: {"logits": 1e-4, "grad": 5e-2, "loss": 2e-2, "same_dtype": 1e-3}}


def _inputs(b, d, hw, dtype, seed=0):
    gen = torch.Generator(device="cpu").manual_seed(seed)
    visual = F.normalize(torch.randn(b, d, hw, generator=gen), dim=1).to("cuda", dtype).requires_grad_()
    audio = F.normalize(torch.randn(b, d, generator=gen), dim=1).to("cuda", dtype).requires_grad_()
    return visual, audio


def _rel_norm(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("b,hw", [(512, 49), (384, 196), (1023, 49)])
def test_spatial_max_triton_vs_reference(dtype, b, hw):
    from avloc.ops.spatial_max_sim import spatial_max_similarity

    visual, audio = _inputs(b, 512, hw, dtype)
    ref_v = visual.detach().float().requires_grad_()
    ref_a = audio.detach().float().requires_grad_()
    g = torch.randn(b, b, device="cuda")
    ref, ref_idx = spatial_max_similarity(ref_v, ref_a, 0.03, "reference")
    got, idx = spatial_max_similarity(visual, audio, 0.03, "triton")
    assert idx.dtype == torch.int32
    assert ((got - ref).abs().max() / ref.abs().max()).item() <= TOL[dtype]["logits"]
    # near-ties may pick another position; each such pair moves one gradient term elsewhere
    mismatch = (idx != ref_idx).float().mean().item()
    assert mismatch < 1e-3
    ref_grads = torch.autograd.grad((ref * g).sum(), (ref_v, ref_a))
    grads = torch.autograd.grad((got * g).sum(), (visual, audio))
    for a, r in zip(grads, ref_grads):
        assert _rel_norm(a, r) <= TOL[dtype]["grad"] + 3 * mismatch ** 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fnac_losses_triton_vs_torch_and_reference(dtype):
    from avloc.losses import LOSS_TERMS, fnac_losses

    b, d, side = 256, 512, 7
    visual, audio = _inputs(b, d, side * side, dtype, seed=1)
    visual4 = visual.detach().view(b, d, side, side)
    results = {}
    for impl in ("reference", "torch", "triton"):
        v = (visual4.float() if impl == "reference" else visual4).clone().requires_grad_()
        a = (audio.detach().float() if impl == "reference" else audio.detach()).clone().requires_grad_()
        out = fnac_losses(v, a, impl=impl)
        total = out["contrastive"] + 100 * (out["fns1"] + out["tns"] + out["fns2"])
        results[impl] = (out, torch.autograd.grad(total, (v, a)))
    ref_out, ref_grads = results["reference"]
    for impl in ("torch", "triton"):
        out, grads = results[impl]
        for key in LOSS_TERMS:
            err = (out[key].float() - ref_out[key]).abs().item()
            assert err <= TOL[dtype]["loss"] * max(ref_out[key].abs().item(), 1.0 / b), (impl, key)
        for g, r in zip(grads, ref_grads):
            assert _rel_norm(g, r) <= TOL[dtype]["grad"], impl
    (t_out, t_grads), (c_out, c_grads) = results["triton"], results["torch"]
    for key in LOSS_TERMS:
        assert abs(t_out[key].item() - c_out[key].item()) <= TOL[dtype]["same_dtype"] * max(abs(c_out[key].item()), 1.0 / b)
    for g, r in zip(t_grads, c_grads):
        assert _rel_norm(g, r) <= 10 * TOL[dtype]["same_dtype"]


def test_large_batch_memory_is_bounded():
    from avloc.losses import fnac_losses

    b, d, hw = 4096, 512, 49
    visual, audio = _inputs(b, d, hw, torch.float32, seed=2)
    visual4 = visual.detach().view(b, d, 7, 7).requires_grad_()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fnac_losses(visual4, audio, impl="triton")
    torch.autograd.grad(out["contrastive"] + out["fns1"] + out["tns"] + out["fns2"], (visual4, audio))
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base - (visual4.numel() + audio.numel()) * 4
    assert extra < b * b * hw * 4 / 4  # far below the 3 GiB volume the reference builds
