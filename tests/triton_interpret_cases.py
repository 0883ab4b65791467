"""Triton kernels against the references on CPU through the Triton interpreter.

Not collected by itself (the name does not start with test_): test_ops_triton.py runs this file
in a fresh pytest process with TRITON_INTERPRET=1, which must be set before triton defines a
kernel. Small shapes: odd batches, HW = 49 and HW > one position block, D not a power of two.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from avloc.losses import LOSS_TERMS, fnac_losses
from avloc.ops.softmax_l1 import LowRank, softmax_l1
from avloc.ops.spatial_max_sim import spatial_max_similarity
from test_losses import assert_rel_close, compare, fp64_formula, make_inputs, values_and_grads

torch.set_num_threads(1)


def test_interpreter_is_on():
    assert os.environ.get("TRITON_INTERPRET") == "1"


@pytest.mark.parametrize("bv,ba,d,hw", [(5, 7, 37, 49), (3, 4, 20, 70), (1, 65, 50, 9)])
def test_spatial_max_forward_backward(bv, ba, d, hw):
    gen = torch.Generator().manual_seed(bv * 100 + hw)
    visual = F.normalize(torch.randn(bv, d, hw, generator=gen), dim=1).requires_grad_()
    audio = F.normalize(torch.randn(ba, d, generator=gen), dim=1).requires_grad_()
    pool = torch.rand(bv, 2, hw, generator=gen)
    g_logits = torch.randn(bv, ba, generator=gen)
    g_pooled = torch.randn(bv, 2, d, generator=gen)
    results = {}
    for impl in ("reference", "triton"):
        logits, index, pooled = spatial_max_similarity(visual, audio, 0.03, impl, pool=pool)
        grads = torch.autograd.grad((logits * g_logits).sum() + (pooled * g_pooled).sum(), (visual, audio))
        results[impl] = (logits, index, pooled, grads)
    ref, tri = results["reference"], results["triton"]
    assert tri[1].dtype == torch.int32 and torch.equal(tri[1], ref[1])
    assert_rel_close(tri[0], ref[0], 1e-6, "logits")
    assert_rel_close(tri[2], ref[2], 1e-6, "pooled")
    for got, want in zip(tri[3], ref[3]):
        assert_rel_close(got, want, 1e-5, "grad")


def test_spatial_max_bf16_inputs():
    gen = torch.Generator().manual_seed(3)
    visual = F.normalize(torch.randn(5, 24, 49, generator=gen), dim=1).bfloat16()
    audio = F.normalize(torch.randn(6, 24, generator=gen), dim=1).bfloat16()
    ref, _ = spatial_max_similarity(visual.float(), audio.float(), 0.03, "reference")
    got, _ = spatial_max_similarity(visual, audio, 0.03, "triton")
    assert got.dtype == torch.float32
    assert_rel_close(got, ref, 1e-5, "logits from bf16 inputs, fp32 accumulation")


@pytest.mark.parametrize("r,c", [(5, 7), (3, 1100)])
@pytest.mark.parametrize("lowrank", [False, True])
def test_softmax_l1(r, c, lowrank):
    gen = torch.Generator().manual_seed(r + c)
    x = (torch.randn(r, c, generator=gen) * 4).requires_grad_()
    left = torch.randn(r, 3, generator=gen, requires_grad=True)
    right = torch.randn(c, 3, generator=gen, requires_grad=True)
    y = LowRank(left, right, 2.5) if lowrank else (torch.randn(r, c, generator=gen) * 4).requires_grad_()
    leaves = (x, left, right) if lowrank else (x, y)
    # ground truth in fp64 on the same values (a fp32 reference sums 1100 terms in another order)
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    x64 = leaves64[0]
    y64 = LowRank(leaves64[1], leaves64[2], 2.5) if lowrank else leaves64[1]
    want = softmax_l1(x64, y64, "reference")
    got = softmax_l1(x, y, "triton", workspace_bytes=4096)
    assert_rel_close(got, want, 1e-5, "value")
    # Over 1100 columns, p * (s - <p, s>) cancels: torch's own fp32 softmax/l1 autograd is 3.4e-5
    # from the fp64 value on this case, so the wide case gets 1e-4.
    rel = 1e-5 if c < 100 else 1e-4
    for a, b in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves64)):
        assert_rel_close(a, b, rel, "grad")


@pytest.mark.parametrize("shape", [(5, 37, 7, 7), (3, 20, 10, 7)])
def test_fnac_losses_triton_matches_formula(shape):
    visual, audio = make_inputs(*shape, seed=2)
    formula = fp64_formula(visual, audio)
    got = values_and_grads(lambda v, a: fnac_losses(v, a, impl="triton", workspace_bytes=3000), visual, audio)
    compare(*got, *formula, rel=1e-5)


def test_fnac_losses_triton_distributed_form():
    b, parts = 6, 2
    visual, audio = make_inputs(b, 20, 7, 7, seed=4)
    full = fp64_formula(visual, audio)
    per = b // parts

    def mean_of_ranks(v, a):
        outs = [fnac_losses(v[r * per:(r + 1) * per], a[r * per:(r + 1) * per], impl="triton", visual_all=v,
                            audio_all=a, offset=r * per) for r in range(parts)]
        mean = {k: sum(o[k] for o in outs) / parts for k in LOSS_TERMS}
        mean["maps"] = torch.cat([o["maps"] for o in outs])
        return mean

    compare(*values_and_grads(mean_of_ranks, visual, audio), *full, rel=1e-5)
