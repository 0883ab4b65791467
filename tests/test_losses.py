"""fnac_losses: every CPU implementation against the formulas of METHOD.md §3, values and
gradients; the distributed (local-rows) form; memory boundedness; the op-level entry points.
The triton implementation runs the same checks under the interpreter in test_ops_triton.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from avloc.errors import InputError
from avloc.losses import LOSS_TERMS, fnac_losses
from avloc.ops.logit_terms import logit_terms
from avloc.ops.softmax_l1 import LowRank, softmax_l1
from avloc.ops.spatial_max_sim import spatial_max_similarity

torch.set_num_threads(2)
CPU_IMPLS = ("reference", "torch")


def make_inputs(b, d, h, w, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    visual = F.normalize(torch.randn(b, d, h, w, generator=gen, dtype=torch.float64), dim=1).to(dtype)
    audio = F.normalize(torch.randn(b, d, generator=gen, dtype=torch.float64), dim=1).to(dtype)
    return visual.requires_grad_(), audio.requires_grad_()


def formula_losses(visual, audio, tau=0.03, threshold=0.6, adjacency_grad=True):
    """METHOD.md §3 written out with loops and explicit softmaxes (independent of avloc)."""
    b = visual.shape[0]
    vf = visual.flatten(2)
    sim = torch.stack([torch.stack([(vf[n] * audio[m][:, None]).sum(0) for m in range(b)]) for n in range(b)]) / tau
    logits = sim.max(dim=-1).values
    maps = torch.stack([sim[n, n] for n in range(b)])

    def softmax(x):
        e = torch.exp(x - x.max(dim=1, keepdim=True).values)
        return e / e.sum(dim=1, keepdim=True)

    def ce(x):
        return torch.stack([torch.logsumexp(x[i], 0) - x[i, i] for i in range(b)]).mean()

    with torch.no_grad():
        norm = (maps - maps.min(1, keepdim=True).values) / (maps.max(1, keepdim=True).values - maps.min(1, keepdim=True).values + 1e-5)
        mask = (norm > threshold).to(visual.dtype)
    fg = torch.stack([(vf[n] * mask[n]).sum(1) / vf.shape[2] for n in range(b)])
    v = vf.mean(dim=2)
    a_aud, a_img, a_fg = audio @ audio.t() / tau, v @ v.t() / tau, fg @ fg.t() / tau
    if not adjacency_grad:
        a_aud, a_img = a_aud.detach(), a_img.detach()
    return {
        "contrastive": ce(logits) + ce(logits.t()),
        "fns1": (softmax(a_aud) - softmax(logits)).abs().mean(),
        "tns": (softmax(a_aud) - softmax(a_fg)).abs().mean(),
        "fns2": (softmax(a_img) - softmax(logits)).abs().mean(),
        "maps": maps.reshape(b, *visual.shape[2:]),
    }


def weighted_total(out, seed=5):
    gen = torch.Generator().manual_seed(seed)
    maps_w = torch.randn(out["maps"].shape, generator=gen, dtype=torch.float64).to(out["maps"].dtype)
    weights = torch.rand(4, generator=gen, dtype=torch.float64) + 0.5
    return sum(float(wt) * out[k] for wt, k in zip(weights, LOSS_TERMS)) + (out["maps"] * maps_w).sum() * 1e-3


def fp64_formula(visual, audio, **kwargs):
    """The formulas evaluated in fp64 on the same (rounded) inputs: the ground truth for fp32 runs."""
    v64 = visual.detach().double().requires_grad_()
    a64 = audio.detach().double().requires_grad_()
    return values_and_grads(lambda v, a: formula_losses(v, a, **kwargs), v64, a64)


def values_and_grads(fn, visual, audio):
    out = fn(visual, audio)
    grads = torch.autograd.grad(weighted_total(out), (visual, audio))
    return out, grads


def assert_rel_close(actual, expected, rel, what, floor=1e-30):
    """max |actual - expected| <= rel * max(max |expected|, floor)."""
    scale = expected.detach().abs().max().clamp_min(floor)
    err = (actual.detach().to(expected.dtype) - expected.detach()).abs().max()
    assert err <= rel * scale, f"{what}: max abs error {err:.3g} > {rel:g} x {scale:.3g}"


def compare(out, grads, ref_out, ref_grads, rel):
    batch = out["maps"].shape[0]
    for key in (*LOSS_TERMS, "maps"):
        # the L1 terms are small differences of softmax entries (about 1/B each): relative to that
        # scale, since fp32 cancellation bounds their relative accuracy when the two softmaxes agree
        floor = 1.0 / batch if key in ("fns1", "tns", "fns2") else 1e-30
        assert_rel_close(out[key], ref_out[key], rel, key, floor)
    for name, g, rg in zip(("d visual", "d audio"), grads, ref_grads):
        assert_rel_close(g, rg, rel, name)


def test_reference_matches_the_written_out_formulas_fp64():
    visual, audio = make_inputs(6, 10, 3, 4, dtype=torch.float64)
    ref = values_and_grads(lambda v, a: fnac_losses(v, a, impl="reference"), visual, audio)
    formula = values_and_grads(formula_losses, visual, audio)
    compare(*ref, *formula, rel=1e-10)
    assert ref[0]["fns1"] > 0 and ref[0]["tns"] > 0 and ref[0]["fns2"] > 0


@pytest.mark.parametrize("shape", [(5, 37, 7, 7), (8, 64, 5, 6), (3, 16, 1, 3), (12, 32, 14, 14)])
@pytest.mark.parametrize("workspace", [None, 2000])
def test_torch_impl_matches_formula_fp32(shape, workspace):
    visual, audio = make_inputs(*shape)
    formula = fp64_formula(visual, audio)
    for impl in CPU_IMPLS:
        got = values_and_grads(lambda v, a: fnac_losses(v, a, impl=impl, workspace_bytes=workspace), visual, audio)
        compare(*got, *formula, rel=1e-5)


def test_impls_agree_fp64_and_auto_is_torch_on_cpu():
    visual, audio = make_inputs(7, 24, 7, 7, dtype=torch.float64, seed=3)
    ref = values_and_grads(lambda v, a: fnac_losses(v, a, impl="reference"), visual, audio)
    for impl in ("torch", "auto"):
        got = values_and_grads(lambda v, a: fnac_losses(v, a, impl=impl, workspace_bytes=3000), visual, audio)
        assert got[0]["fns1"].dtype == torch.float64
        compare(*got, *ref, rel=1e-10)


@pytest.mark.parametrize("shape", [(6, 24, 5, 5), (9, 16, 3, 4)])
def test_stopped_adjacency_gradient_matches_formula_and_changes_the_gradient(shape):
    visual, audio = make_inputs(*shape, seed=7)
    # similar clips (audio cosines ~0.9, as early in training): adjacency softmaxes far from one-hot
    audio = F.normalize(audio.detach() * 0.1 + F.normalize(torch.ones(shape[1], dtype=audio.dtype), dim=0),
                        dim=1).requires_grad_()
    formula = fp64_formula(visual, audio, adjacency_grad=False)
    for impl in CPU_IMPLS:
        got = values_and_grads(lambda v, a: fnac_losses(v, a, impl=impl, workspace_bytes=2000, adjacency_grad=False),
                               visual, audio)
        compare(*got, *formula, rel=1e-5)
    live = fp64_formula(visual, audio)
    for key in LOSS_TERMS:  # same values: only where the gradient flows changes
        assert_rel_close(formula[0][key], live[0][key], 1e-12, key, 1e-30)
    # the TNS term reaches the audio only through the audio adjacency: stopped, that gradient is zero
    for grad in (True, False):
        tns = fnac_losses(visual, audio, impl="torch", adjacency_grad=grad)["tns"]
        g_audio = torch.autograd.grad(tns, audio)[0].abs().max()
        assert (g_audio > 1e-3) if grad else (g_audio == 0), (grad, g_audio)


def test_tau_and_threshold_are_used():
    visual, audio = make_inputs(6, 16, 4, 4, seed=4)
    for impl in CPU_IMPLS:
        base = fnac_losses(visual, audio, impl=impl)
        other_tau = fnac_losses(visual, audio, tau=0.07, impl=impl)
        other_thr = fnac_losses(visual, audio, fg_threshold=0.2, impl=impl)
        formula = formula_losses(visual, audio, tau=0.07, threshold=0.2)
        both = fnac_losses(visual, audio, tau=0.07, fg_threshold=0.2, impl=impl)
        assert not torch.isclose(base["contrastive"], other_tau["contrastive"])
        assert not torch.isclose(base["tns"], other_thr["tns"])
        for key in LOSS_TERMS:
            assert_rel_close(both[key], formula[key], 1e-5, key)


def test_bf16_inputs_torch_impl_accumulates_in_fp32():
    visual, audio = make_inputs(8, 64, 7, 7, seed=6)
    v16, a16 = visual.detach().bfloat16().requires_grad_(), audio.detach().bfloat16().requires_grad_()
    # the formulas in fp64 on the same bf16 values; the mask comes from bf16 maps in both
    # (the implementation computes the diagonal maps in the input dtype), so compare the terms
    # that do not depend on it tightly and the foreground term loosely
    ref = fp64_formula(v16, a16)[0]
    got = fnac_losses(v16, a16, impl="torch")
    for key in LOSS_TERMS:
        assert got[key].dtype == torch.float32
    for key in ("contrastive", "fns1", "fns2"):
        assert_rel_close(got[key], ref[key], 1e-5, key, floor=1 / 8)
    assert_rel_close(got["tns"], ref["tns"], 0.05, "tns", floor=1 / 8)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("parts", [2, 3])
def test_distributed_form_mean_over_ranks_equals_full_batch(impl, parts):
    b = 12
    visual, audio = make_inputs(b, 20, 7, 7, seed=7)
    full = fp64_formula(visual, audio)
    per = b // parts

    def mean_of_ranks(v, a):
        outs = [fnac_losses(v[r * per:(r + 1) * per], a[r * per:(r + 1) * per], impl=impl, visual_all=v, audio_all=a,
                            offset=r * per, workspace_bytes=1500) for r in range(parts)]
        mean = {k: sum(o[k] for o in outs) / parts for k in LOSS_TERMS}
        mean["maps"] = torch.cat([o["maps"] for o in outs])
        return mean

    got = values_and_grads(mean_of_ranks, visual, audio)
    compare(*got, *full, rel=1e-5)


def test_distributed_rank_rows_use_global_negatives():
    visual, audio = make_inputs(8, 16, 3, 3, seed=8)
    local_only = fnac_losses(visual[4:], audio[4:], impl="torch")
    with_global = fnac_losses(visual[4:], audio[4:], impl="torch", visual_all=visual, audio_all=audio, offset=4)
    assert with_global["contrastive"] > local_only["contrastive"]  # more negatives in each softmax
    torch.testing.assert_close(with_global["maps"], local_only["maps"])


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t.is_sparse_csr:
                self.largest = max(self.largest, t.numel())
        return out


def test_torch_impl_never_builds_the_similarity_volume():
    b, d, hw = 96, 8, 49
    visual, audio = make_inputs(b, d, 7, 7, seed=9)
    volume = b * b * hw
    sizes = {}
    for impl in CPU_IMPLS:
        with _LargestTensor() as mode:
            out = fnac_losses(visual, audio, impl=impl, workspace_bytes=volume * 4 // 8)
            torch.autograd.grad(weighted_total(out), (visual, audio))
        sizes[impl] = mode.largest
    assert sizes["reference"] >= volume  # the probe sees it where it exists
    assert sizes["torch"] < volume // 4
    assert sizes["torch"] <= max(visual.numel(), b * b)  # inputs/their grads and the [B, B] logits at most


def test_spatial_max_similarity_op_argmax_and_grads():
    visual, audio = make_inputs(5, 24, 7, 7, seed=10)
    vf = visual.flatten(2)
    a2 = audio[:3]  # rectangular: B_v != B_a
    ref_logits, ref_idx = spatial_max_similarity(vf, a2, 0.05, "reference")
    logits, idx = spatial_max_similarity(vf, a2, 0.05, "torch", workspace_bytes=1000)
    assert idx.dtype == torch.int32 and torch.equal(idx, ref_idx)
    g = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    ref_grads = torch.autograd.grad((ref_logits * g).sum(), (visual, audio))
    grads = torch.autograd.grad((logits * g).sum(), (visual, audio))
    assert_rel_close(logits, ref_logits, 1e-6, "logits")
    for got, want in zip(grads, ref_grads):
        assert_rel_close(got, want, 1e-6, "grad")
    # the visual gradient is non-zero only at argmax positions
    nonzero = grads[0].flatten(2).abs().sum(1) > 0
    expected = torch.zeros(5, 49, dtype=torch.bool)
    expected.scatter_(1, idx.long(), True)
    assert torch.equal(nonzero, expected)


@pytest.mark.parametrize("lowrank", [False, True])
def test_softmax_l1_op(lowrank):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(7, 9, generator=gen) * 3).requires_grad_()
    left = torch.randn(7, 4, generator=gen, requires_grad=True)
    right = torch.randn(9, 4, generator=gen, requires_grad=True)
    y = LowRank(left, right, 2.0) if lowrank else (torch.randn(7, 9, generator=gen) * 3).requires_grad_()
    leaves = (x, left, right) if lowrank else (x, y)
    want = F.l1_loss(torch.softmax(x, 1), torch.softmax(y.dense() if lowrank else y, 1))
    want_g = torch.autograd.grad(want, leaves)
    for impl in CPU_IMPLS:
        got = softmax_l1(x, y, impl, workspace_bytes=100)
        got_g = torch.autograd.grad(got, leaves)
        assert_rel_close(got, want, 1e-6, "value")
        for a, b in zip(got_g, want_g):
            assert_rel_close(a, b, 1e-5, "grad")


def test_logit_terms_op_rectangular_rows():
    gen = torch.Generator().manual_seed(12)
    logits = (torch.randn(4, 10, generator=gen) * 5).requires_grad_()
    left = torch.randn(4, 3, generator=gen, requires_grad=True)
    right = torch.randn(10, 3, generator=gen, requires_grad=True)
    ops = (LowRank(left, right, 4.0),)
    ref = logit_terms(logits, 6, False, ops, "reference")
    got = logit_terms(logits, 6, False, ops, "torch", workspace_bytes=64)
    for a, b in zip(got, ref):
        assert_rel_close(a, b, 1e-6, "term")
    leaves = (logits, left, right)
    for a, b in zip(torch.autograd.grad(got[0] + 3 * got[2], leaves), torch.autograd.grad(ref[0] + 3 * ref[2], leaves)):
        assert_rel_close(a, b, 1e-5, "grad")


def test_bad_arguments_are_clear():
    visual, audio = make_inputs(4, 8, 2, 2)
    with pytest.raises(InputError, match="unknown kernel implementation"):
        fnac_losses(visual, audio, impl="cuda-fast")
    with pytest.raises(ValueError, match="expected visual"):
        fnac_losses(visual[:, :, 0], audio)
    with pytest.raises(ValueError, match="go together"):
        fnac_losses(visual, audio, visual_all=visual)
    with pytest.raises(ValueError, match="offset"):
        fnac_losses(visual[:2], audio[:2], visual_all=visual, audio_all=audio, offset=3)


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    visual, audio = make_inputs(4, 8, 2, 2)
    with pytest.raises(InputError, match="CUDA"):
        fnac_losses(visual, audio, impl="triton")


def test_autocast_does_not_lower_the_kernels_precision():
    visual, audio = make_inputs(6, 32, 5, 5, seed=13)
    plain = values_and_grads(lambda v, a: fnac_losses(v, a, impl="torch"), visual, audio)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fnac_losses(visual, audio, impl="torch")
        total = weighted_total(out)
    grads = torch.autograd.grad(total, (visual, audio))
    compare(out, grads, *plain, rel=1e-6)
