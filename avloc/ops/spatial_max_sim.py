"""Spatial-max similarity: ``logits[n, m] = max_p <V[n, :, p], a[m]> / tau``.

The B_v x B_a x HW similarity volume is never materialised by the ``torch`` (chunked over
visual rows) and ``triton`` (tiled) implementations. The forward keeps the argmax position
(int32) so that the backward scatters gradients only there:
  dV[n, :, argmax[n, m]] += g[n, m] a[m] / tau,   da[m] += g[n, m] V[n, :, argmax[n, m]] / tau.
``reference`` is the plain einsum formula (materialises the volume; tests and baseline).
"""

from __future__ import annotations

import functools
import warnings

import torch

from avloc.ops.dispatch import ROW_STEP, accumulation_dtype, loop_end, no_autocast, resolve_impl, rows_per_chunk


def _check(visual: torch.Tensor, audio: torch.Tensor) -> None:
    if visual.dim() != 3 or audio.dim() != 2 or visual.shape[1] != audio.shape[1]:
        raise ValueError(f"expected visual [Bv, D, HW] and audio [Ba, D]; got {tuple(visual.shape)} and {tuple(audio.shape)}")


# ----------------------------------------------------------------------------- reference
def reference_spatial_max(visual: torch.Tensor, audio: torch.Tensor, tau: float):
    sim = torch.einsum("ndp,md->nmp", visual, audio) / tau
    values, index = sim.max(dim=-1)
    return values, index.to(torch.int32)


# ----------------------------------------------------------------------------- torch (chunked)
def _torch_forward(visual, audio, tau, workspace_bytes):
    bv, d, hw = visual.shape
    ba = audio.shape[0]
    acc = accumulation_dtype(visual.dtype)
    logits = torch.empty(bv, ba, dtype=acc, device=visual.device)
    index = torch.empty(bv, ba, dtype=torch.int32, device=visual.device)
    audio_acc = audio.to(acc)
    step = rows_per_chunk(hw * ba * torch.finfo(acc).bits // 8 * 2, workspace_bytes)
    for s in range(0, bv, step):
        sim = torch.matmul(audio_acc, visual[s : s + step].to(acc))  # [n, Ba, HW]
        values, idx = sim.max(dim=2)
        logits[s : s + step] = values / tau
        index[s : s + step] = idx
    return logits, index


def _csr(crow, col, values, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow, col, values, size=size)


def _torch_backward(grad, index, visual, audio, tau, workspace_bytes):
    """Both gradients are products with the sparse scatter matrix W[(n, p), m] = g[n, m] [argmax[n, m] == p]
    (one non-zero per (n, m)), done as CSR @ dense: B_v B_a D multiply-adds instead of B_v B_a HW D."""
    bv, d, hw = visual.shape
    ba = audio.shape[0]
    acc = accumulation_dtype(visual.dtype)
    dev = visual.device
    audio_acc = audio.to(acc)
    grad_visual = torch.empty(visual.shape, dtype=acc, device=dev)
    grad_audio = torch.zeros(ba, d, dtype=acc, device=dev)
    step = rows_per_chunk(ba * (d + 32) + hw * d * 8, workspace_bytes)
    for s in range(0, bv, step):
        g = grad[s : s + step].to(acc) / tau
        n = g.shape[0]
        rows = torch.arange(n, device=dev)[:, None] * hw + index[s : s + step].long()  # [n, Ba] row of W
        # W (rows (n, p), sorted) @ audio -> dV
        order = torch.argsort(rows.reshape(-1))
        crow = torch.zeros(n * hw + 1, dtype=torch.long, device=dev)
        crow[1:] = torch.bincount(rows.reshape(-1), minlength=n * hw).cumsum(0)
        cols = torch.arange(ba, device=dev).repeat(n)[order]
        w = _csr(crow, cols, g.reshape(-1)[order], (n * hw, ba))
        grad_visual[s : s + step] = (w @ audio_acc).view(n, hw, d).transpose(1, 2)
        # W^T (rows m, exactly n entries each, already sorted by (n, p)) @ visual -> da
        crow_t = torch.arange(ba + 1, device=dev) * n
        w_t = _csr(crow_t, rows.t().reshape(-1), g.t().reshape(-1), (ba, n * hw))
        grad_audio += w_t @ visual[s : s + step].to(acc).transpose(1, 2).reshape(n * hw, d)
    return grad_visual, grad_audio


# ----------------------------------------------------------------------------- triton
@functools.cache
def _triton_kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(V, A, L, IDX, Ba, D, HW, svn, svd, svp, sam, sad, sln, slm, scale,
                       PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                       BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                       P_END: tl.constexpr, D_END: tl.constexpr):
        n = tl.program_id(0)
        offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
        m_mask = offs_m < Ba
        best = tl.full([BLOCK_M], float("-inf"), tl.float32)
        best_idx = tl.zeros([BLOCK_M], tl.int32)
        for p0 in range(0, P_END, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            p_mask = offs_p < HW
            acc = tl.zeros([BLOCK_P, BLOCK_M], tl.float32)
            for d0 in range(0, D_END, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_mask = offs_d < D
                v = tl.load(V + n * svn + offs_p[:, None] * svp + offs_d[None, :] * svd,
                            mask=p_mask[:, None] & d_mask[None, :], other=0.0)
                a = tl.load(A + offs_m[None, :] * sam + offs_d[:, None] * sad,
                            mask=m_mask[None, :] & d_mask[:, None], other=0.0)
                if UPCAST:
                    v = v.to(tl.float32)
                    a = a.to(tl.float32)
                acc = tl.dot(v, a, acc, input_precision=PRECISION)
            acc = tl.where(p_mask[:, None], acc, float("-inf"))
            block_max = tl.max(acc, axis=0)
            block_arg = tl.argmax(acc, axis=0).to(tl.int32) + p0
            better = block_max > best
            best = tl.where(better, block_max, best)
            best_idx = tl.where(better, block_arg, best_idx)
        tl.store(L + n * sln + offs_m * slm, best * scale, mask=m_mask)
        tl.store(IDX + n * sln + offs_m * slm, best_idx, mask=m_mask)

    @triton.jit
    def grad_visual_kernel(G, IDX, A, DV, Ba, D, HW, sgn, sgm, sam, sad, svn, svd, svp, scale,
                           PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                           BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                           P_END: tl.constexpr, M_END: tl.constexpr):
        n = tl.program_id(0)
        offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        d_mask = offs_d < D
        for p0 in range(0, P_END, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            p_mask = offs_p < HW
            acc = tl.zeros([BLOCK_P, BLOCK_D], tl.float32)
            for m0 in range(0, M_END, BLOCK_M):
                offs_m = m0 + tl.arange(0, BLOCK_M)
                m_mask = offs_m < Ba
                g = tl.load(G + n * sgn + offs_m * sgm, mask=m_mask, other=0.0)
                idx = tl.load(IDX + n * sgn + offs_m * sgm, mask=m_mask, other=-1)
                w = tl.where(idx[None, :] == offs_p[:, None], g[None, :], 0.0)
                a = tl.load(A + offs_m[:, None] * sam + offs_d[None, :] * sad,
                            mask=m_mask[:, None] & d_mask[None, :], other=0.0)
                if UPCAST:
                    a = a.to(tl.float32)
                else:
                    w = w.to(a.dtype)
                acc = tl.dot(w, a, acc, input_precision=PRECISION)
            tl.store(DV + n * svn + offs_p[:, None] * svp + offs_d[None, :] * svd, acc * scale,
                     mask=p_mask[:, None] & d_mask[None, :])

    @triton.jit
    def grad_audio_kernel(G, IDX, V, DA, Bv, Ba, D, HW, sgn, sgm, svn, svd, svp, sam, sad, scale,
                          PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                          BLOCK_P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                          P_END: tl.constexpr, N_END: tl.constexpr):
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        m_mask = offs_m < Ba
        d_mask = offs_d < D
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for n in range(0, N_END):
            row = m_mask & (n < Bv)
            g = tl.load(G + n * sgn + offs_m * sgm, mask=row, other=0.0)
            idx = tl.load(IDX + n * sgn + offs_m * sgm, mask=row, other=-1)
            for p0 in range(0, P_END, BLOCK_P):
                offs_p = p0 + tl.arange(0, BLOCK_P)
                p_mask = (offs_p < HW) & (n < Bv)
                w = tl.where(idx[:, None] == offs_p[None, :], g[:, None], 0.0)
                v = tl.load(V + n * svn + offs_p[:, None] * svp + offs_d[None, :] * svd,
                            mask=p_mask[:, None] & d_mask[None, :], other=0.0)
                if UPCAST:
                    v = v.to(tl.float32)
                else:
                    w = w.to(v.dtype)
                acc = tl.dot(w, v, acc, input_precision=PRECISION)
        tl.store(DA + offs_m[:, None] * sam + offs_d[None, :] * sad, acc * scale,
                 mask=m_mask[:, None] & d_mask[None, :])

    return forward_kernel, grad_visual_kernel, grad_audio_kernel


def _triton_options(dtype: torch.dtype):
    from avloc.ops.dispatch import triton_interpreting

    # fp32 inputs: exact fp32 products (no TF32); half inputs: native tensor-core dot with fp32
    # accumulation on GPU. The interpreter computes half dots wrongly, so it upcasts.
    upcast = dtype == torch.float32 or triton_interpreting()
    return ("ieee" if upcast else "tf32"), upcast


def _blocks(hw: int, d: int):
    import triton

    block_p = min(64, max(16, triton.next_power_of_2(hw)))
    block_d = min(64, max(16, triton.next_power_of_2(d)))
    return block_p, 64, block_d


def _triton_forward(visual, audio, tau):
    import triton

    fwd, _, _ = _triton_kernels()
    audio = audio.to(visual.dtype)  # tl.dot needs one dtype; the audio side is small
    bv, d, hw = visual.shape
    ba = audio.shape[0]
    logits = torch.empty(bv, ba, dtype=torch.float32, device=visual.device)
    index = torch.empty(bv, ba, dtype=torch.int32, device=visual.device)
    precision, upcast = _triton_options(visual.dtype)
    block_p, block_m, block_d = _blocks(hw, d)
    grid = (bv, triton.cdiv(ba, block_m))
    fwd[grid](visual, audio, logits, index, ba, d, hw, *visual.stride(), *audio.stride(), *logits.stride(), 1.0 / tau,
              PRECISION=precision, UPCAST=upcast, BLOCK_P=block_p, BLOCK_M=block_m, BLOCK_D=block_d,
              P_END=loop_end(hw, block_p), D_END=loop_end(d, block_d))
    return logits, index


def _triton_backward(grad, index, visual, audio, tau):
    import triton

    _, grad_v_kernel, grad_a_kernel = _triton_kernels()
    audio = audio.to(visual.dtype)
    bv, d, hw = visual.shape
    ba = audio.shape[0]
    grad = grad.to(torch.float32).contiguous()
    index = index.contiguous()
    grad_visual = torch.empty(visual.shape, dtype=torch.float32, device=visual.device)
    grad_audio = torch.empty(ba, d, dtype=torch.float32, device=visual.device)
    precision, upcast = _triton_options(visual.dtype)
    block_p, block_m, block_d = _blocks(hw, d)
    grad_v_kernel[(bv, triton.cdiv(d, block_d))](
        grad, index, audio, grad_visual, ba, d, hw, *grad.stride(), *audio.stride(), *grad_visual.stride(), 1.0 / tau,
        PRECISION=precision, UPCAST=upcast, BLOCK_P=block_p, BLOCK_M=block_m, BLOCK_D=block_d,
        P_END=loop_end(hw, block_p), M_END=loop_end(ba, block_m))
    grad_a_kernel[(triton.cdiv(ba, block_m), triton.cdiv(d, block_d))](
        grad, index, visual, grad_audio, bv, ba, d, hw, *grad.stride(), *visual.stride(), *grad_audio.stride(), 1.0 / tau,
        PRECISION=precision, UPCAST=upcast, BLOCK_P=block_p, BLOCK_M=block_m, BLOCK_D=block_d,
        P_END=loop_end(hw, block_p), N_END=loop_end(bv, ROW_STEP))
    return grad_visual, grad_audio


# ----------------------------------------------------------------------------- autograd + entry
def _pool_forward(visual, pool, workspace_bytes):
    """pooled[n, k, :] = sum_p V[n, :, p] pool[n, k, p]  ([Bv, K, D], accumulation dtype; chunked so
    that half-precision inputs are upcast one block at a time)."""
    bv, d, hw = visual.shape
    acc = accumulation_dtype(visual.dtype)
    pooled = torch.empty(bv, pool.shape[1], d, dtype=acc, device=visual.device)
    step = rows_per_chunk(d * hw * 4, workspace_bytes)
    for s in range(0, bv, step):
        pooled[s : s + step] = torch.bmm(visual[s : s + step].to(acc), pool[s : s + step].to(acc).transpose(1, 2)).transpose(1, 2)
    return pooled


def _pool_backward_into(grad_visual, grad_pooled, pool, workspace_bytes):
    """grad_visual += grad_pooled^T pool, chunk by chunk (no second visual-sized buffer)."""
    bv, d, hw = grad_visual.shape
    step = rows_per_chunk(d * hw * 4, workspace_bytes)
    for s in range(0, bv, step):
        grad_visual[s : s + step].baddbmm_(grad_pooled[s : s + step].to(grad_visual.dtype).transpose(1, 2),
                                           pool[s : s + step].to(grad_visual.dtype))


class SpatialMaxSimilarity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, visual, audio, pool, tau, impl, workspace_bytes):
        if impl == "triton":
            logits, index = _triton_forward(visual, audio, tau)
        else:
            logits, index = _torch_forward(visual, audio, tau, workspace_bytes)
        pooled = _pool_forward(visual, pool, workspace_bytes) if pool is not None else None
        ctx.save_for_backward(visual, audio, index, pool)
        ctx.tau, ctx.impl, ctx.workspace_bytes = tau, impl, workspace_bytes
        ctx.mark_non_differentiable(index)
        return (logits, index) if pooled is None else (logits, index, pooled)

    @staticmethod
    def backward(ctx, grad_logits, _grad_index, grad_pooled=None):
        visual, audio, index, pool = ctx.saved_tensors
        with no_autocast(visual.device):
            if ctx.impl == "triton":
                gv, ga = _triton_backward(grad_logits, index, visual, audio, ctx.tau)
            else:
                gv, ga = _torch_backward(grad_logits, index, visual, audio, ctx.tau, ctx.workspace_bytes)
            if grad_pooled is not None:
                _pool_backward_into(gv, grad_pooled, pool, ctx.workspace_bytes)
            return gv.to(visual.dtype), ga.to(audio.dtype), None, None, None, None


def spatial_max_similarity(visual: torch.Tensor, audio: torch.Tensor, tau: float = 0.03, impl: str = "auto",
                           workspace_bytes: int | None = None, pool: torch.Tensor | None = None):
    """``(logits [Bv, Ba] fp32, argmax [Bv, Ba] int32)`` for visual [Bv, D, HW] (or [Bv, D, h, w]) and audio [Ba, D].

    With ``pool`` [Bv, K, HW] (constant weights, no gradient) also returns the weighted spatial
    poolings ``pooled[n, k] = sum_p V[n, :, p] pool[n, k, p]`` [Bv, K, D] from the same node, so
    that the backward accumulates every visual gradient into ONE visual-sized buffer (separate
    autograd nodes would each return a visual-sized gradient and autograd would hold two).
    """
    if visual.dim() == 4:
        visual = visual.flatten(2)
    _check(visual, audio)
    if pool is not None and (pool.dim() != 3 or pool.shape[0] != visual.shape[0] or pool.shape[2] != visual.shape[2]):
        raise ValueError(f"pool must be [Bv, K, HW] = [{visual.shape[0]}, K, {visual.shape[2]}], got {tuple(pool.shape)}")
    impl = resolve_impl(impl, visual.device)
    if impl == "triton" and visual.dtype == torch.float64:
        impl = "torch"  # no fp64 tensor-core dot; the chunked path is exact in fp64
    if impl == "reference":
        logits, index = reference_spatial_max(visual, audio, tau)
        if pool is None:
            return logits, index
        return logits, index, torch.einsum("ndp,nkp->nkd", visual, pool.to(visual.dtype))
    return SpatialMaxSimilarity.apply(visual, audio, None if pool is None else pool.detach(), float(tau), impl, workspace_bytes)
