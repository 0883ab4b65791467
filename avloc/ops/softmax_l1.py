"""Row-softmax L1 distance: ``mean |softmax_rows(X) - softmax_rows(Y)|`` for [R, C] logit matrices.

Forward and backward never store the softmaxes: the forward keeps one log-sum-exp per row
and the backward recomputes the probabilities row block by row block:
  with p = softmax(x_i), q = softmax(y_i), s = sign(p - q) * g / (R C)
  dx_i = p * (s - <p, s>),   dy_i = -q * (s - <q, s>).
An operand is either a dense [R, C] tensor or ``LowRank(left [R, K], right [C, K], scale)``
standing for ``scale * left @ right.T`` (the FNAC adjacency matrices), whose rows are built
chunk by chunk so that the [R, C] matrix never exists in full.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from avloc.ops.dispatch import accumulation_dtype, loop_end, no_autocast, resolve_impl, rows_per_chunk


@dataclass(frozen=True)
class LowRank:
    """``scale * left @ right.T`` without materialising it."""

    left: torch.Tensor
    right: torch.Tensor
    scale: float = 1.0

    @property
    def shape(self):
        return (self.left.shape[0], self.right.shape[0])

    def dense(self) -> torch.Tensor:
        return (self.left @ self.right.t()) * self.scale


# ----------------------------------------------------------------------------- row primitives
def _torch_rows_forward(x, y):
    lse_x = torch.logsumexp(x, dim=1)
    lse_y = torch.logsumexp(y, dim=1)
    diff = (torch.exp(x - lse_x[:, None]) - torch.exp(y - lse_y[:, None])).abs_().sum(dim=1)
    return diff, lse_x, lse_y


def _torch_rows_backward(x, y, lse_x, lse_y, scale):
    p = torch.exp(x - lse_x[:, None])
    q = torch.exp(y - lse_y[:, None])
    s = torch.sign(p - q).mul_(scale)
    dx = p * (s - (p * s).sum(dim=1, keepdim=True))
    dy = q * ((q * s).sum(dim=1, keepdim=True) - s)
    return dx, dy


@functools.cache
def _triton_kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def rows_forward_kernel(X, Y, DIFF, LSEX, LSEY, C, sxr, sxc, syr, syc, BLOCK_C: tl.constexpr, C_END: tl.constexpr):
        r = tl.program_id(0)
        # a finite floor instead of -inf keeps lanes that only saw padding free of inf - inf
        max_x = tl.full([BLOCK_C], -1e30, tl.float32)
        max_y = tl.full([BLOCK_C], -1e30, tl.float32)
        sum_x = tl.zeros([BLOCK_C], tl.float32)
        sum_y = tl.zeros([BLOCK_C], tl.float32)
        for c0 in range(0, C_END, BLOCK_C):
            offs = c0 + tl.arange(0, BLOCK_C)
            mask = offs < C
            x = tl.load(X + r * sxr + offs * sxc, mask=mask, other=-1e30).to(tl.float32)
            y = tl.load(Y + r * syr + offs * syc, mask=mask, other=-1e30).to(tl.float32)
            new_x = tl.maximum(max_x, x)
            new_y = tl.maximum(max_y, y)
            sum_x = sum_x * tl.exp(max_x - new_x) + tl.where(mask, tl.exp(x - new_x), 0.0)
            sum_y = sum_y * tl.exp(max_y - new_y) + tl.where(mask, tl.exp(y - new_y), 0.0)
            max_x = new_x
            max_y = new_y
        mx = tl.max(max_x, axis=0)
        my = tl.max(max_y, axis=0)
        lse_x = mx + tl.log(tl.sum(sum_x * tl.exp(max_x - mx), axis=0))
        lse_y = my + tl.log(tl.sum(sum_y * tl.exp(max_y - my), axis=0))
        diff = tl.zeros([BLOCK_C], tl.float32)
        for c0 in range(0, C_END, BLOCK_C):
            offs = c0 + tl.arange(0, BLOCK_C)
            mask = offs < C
            x = tl.load(X + r * sxr + offs * sxc, mask=mask, other=0.0).to(tl.float32)
            y = tl.load(Y + r * syr + offs * syc, mask=mask, other=0.0).to(tl.float32)
            d = tl.abs(tl.exp(x - lse_x) - tl.exp(y - lse_y))
            diff += tl.where(mask, d, 0.0)
        tl.store(DIFF + r, tl.sum(diff, axis=0))
        tl.store(LSEX + r, lse_x)
        tl.store(LSEY + r, lse_y)

    @triton.jit
    def rows_backward_kernel(X, Y, LSEX, LSEY, DX, DY, C, sxr, sxc, syr, syc, sdxr, sdxc, sdyr, sdyc, scale,
                             BLOCK_C: tl.constexpr, C_END: tl.constexpr):
        r = tl.program_id(0)
        lse_x = tl.load(LSEX + r)
        lse_y = tl.load(LSEY + r)
        ps = tl.zeros([BLOCK_C], tl.float32)
        qs = tl.zeros([BLOCK_C], tl.float32)
        for c0 in range(0, C_END, BLOCK_C):
            offs = c0 + tl.arange(0, BLOCK_C)
            mask = offs < C
            p = tl.exp(tl.load(X + r * sxr + offs * sxc, mask=mask, other=float("-inf")).to(tl.float32) - lse_x)
            q = tl.exp(tl.load(Y + r * syr + offs * syc, mask=mask, other=float("-inf")).to(tl.float32) - lse_y)
            s = tl.where(p > q, 1.0, tl.where(p < q, -1.0, 0.0))
            ps += p * s
            qs += q * s
        p_dot = tl.sum(ps, axis=0) * scale
        q_dot = tl.sum(qs, axis=0) * scale
        for c0 in range(0, C_END, BLOCK_C):
            offs = c0 + tl.arange(0, BLOCK_C)
            mask = offs < C
            p = tl.exp(tl.load(X + r * sxr + offs * sxc, mask=mask, other=float("-inf")).to(tl.float32) - lse_x)
            q = tl.exp(tl.load(Y + r * syr + offs * syc, mask=mask, other=float("-inf")).to(tl.float32) - lse_y)
            s = tl.where(p > q, scale, tl.where(p < q, -scale, 0.0))
            tl.store(DX + r * sdxr + offs * sdxc, p * (s - p_dot), mask=mask)
            tl.store(DY + r * sdyr + offs * sdyc, q * (q_dot - s), mask=mask)

    return rows_forward_kernel, rows_backward_kernel


def _block_c(c: int) -> int:
    import triton

    return min(1024, triton.next_power_of_2(max(c, 16)))


def _triton_rows_forward(x, y):
    fwd, _ = _triton_kernels()
    r, c = x.shape
    out = torch.empty(3, r, dtype=torch.float32, device=x.device)
    block = _block_c(c)
    fwd[(r,)](x, y, out[0], out[1], out[2], c, *x.stride(), *y.stride(), BLOCK_C=block, C_END=loop_end(c, block))
    return out[0], out[1], out[2]


def _triton_rows_backward(x, y, lse_x, lse_y, scale):
    _, bwd = _triton_kernels()
    r, c = x.shape
    dx = torch.empty(r, c, dtype=torch.float32, device=x.device)
    dy = torch.empty(r, c, dtype=torch.float32, device=x.device)
    block = _block_c(c)
    bwd[(r,)](x, y, lse_x.contiguous(), lse_y.contiguous(), dx, dy, c, *x.stride(), *y.stride(), *dx.stride(), *dy.stride(),
              float(scale), BLOCK_C=block, C_END=loop_end(c, block))
    return dx, dy


def rows_forward(x: torch.Tensor, y: torch.Tensor, impl: str):
    """Per row: (sum_j |softmax(x)_j - softmax(y)_j|, logsumexp(x), logsumexp(y)), all fp32 (fp64 for fp64)."""
    if impl == "triton" and x.dtype != torch.float64:
        return _triton_rows_forward(x, y)
    acc = accumulation_dtype(x.dtype)
    return _torch_rows_forward(x.to(acc), y.to(acc))


def rows_backward(x, y, lse_x, lse_y, scale: float, impl: str):
    """Gradients of ``scale * sum_ij |softmax(x) - softmax(y)|`` w.r.t. x and y for a block of rows."""
    if impl == "triton" and x.dtype != torch.float64:
        return _triton_rows_backward(x, y, lse_x, lse_y, scale)
    acc = accumulation_dtype(x.dtype)
    return _torch_rows_backward(x.to(acc), y.to(acc), lse_x, lse_y, scale)


# ----------------------------------------------------------------------------- operands
def operand_rows(dense, low_rank, start, stop):
    if dense is not None:
        return dense[start:stop]
    left, right, scale = low_rank
    return (left[start:stop] @ right.t()) * scale


def accumulate_operand_grad(grad_rows, dense_grad, low_rank, low_rank_grads, start, stop):
    """Route a block of row gradients to the dense grad buffer or to the low-rank factors."""
    if dense_grad is not None:
        dense_grad[start:stop] = grad_rows
        return
    left, right, scale = low_rank
    g_left, g_right = low_rank_grads
    g_left[start:stop] += (grad_rows @ right.to(grad_rows.dtype)) * scale
    g_right.addmm_(grad_rows.t(), left[start:stop].to(grad_rows.dtype), alpha=scale)


def _unpack(op):
    if isinstance(op, LowRank):
        return None, op.left, op.right, float(op.scale)
    return op, None, None, 1.0


def _low_rank_grad_buffers(left, right):
    acc = accumulation_dtype(left.dtype)
    return torch.zeros(left.shape, dtype=acc, device=left.device), torch.zeros(right.shape, dtype=acc, device=right.device)


class SoftmaxL1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, impl, workspace_bytes, x_dense, x_left, x_right, x_scale, y_dense, y_left, y_right, y_scale):
        x_lr = None if x_dense is not None else (x_left, x_right, x_scale)
        y_lr = None if y_dense is not None else (y_left, y_right, y_scale)
        r = (x_dense if x_dense is not None else x_left).shape[0]
        c = x_dense.shape[1] if x_dense is not None else x_right.shape[0]
        acc = accumulation_dtype((x_dense if x_dense is not None else x_left).dtype)
        step = rows_per_chunk(c * 8 * (torch.finfo(acc).bits // 8), workspace_bytes)
        total = torch.zeros((), dtype=acc, device=(x_dense if x_dense is not None else x_left).device)
        lse_x = torch.empty(r, dtype=acc, device=total.device)
        lse_y = torch.empty(r, dtype=acc, device=total.device)
        for s in range(0, r, step):
            diff, lx, ly = rows_forward(operand_rows(x_dense, x_lr, s, s + step), operand_rows(y_dense, y_lr, s, s + step), impl)
            total += diff.sum()
            lse_x[s : s + step] = lx
            lse_y[s : s + step] = ly
        ctx.save_for_backward(x_dense, x_left, x_right, y_dense, y_left, y_right, lse_x, lse_y)
        ctx.meta = (impl, step, r, c, x_scale, y_scale)
        return total / (r * c)

    @staticmethod
    def backward(ctx, grad):
        x_dense, x_left, x_right, y_dense, y_left, y_right, lse_x, lse_y = ctx.saved_tensors
        with no_autocast(lse_x.device):
            impl, step, r, c, x_scale, y_scale = ctx.meta
            x_lr = None if x_dense is not None else (x_left, x_right, x_scale)
            y_lr = None if y_dense is not None else (y_left, y_right, y_scale)
            acc = lse_x.dtype
            gx_dense = torch.empty(r, c, dtype=acc, device=lse_x.device) if x_dense is not None else None
            gy_dense = torch.empty(r, c, dtype=acc, device=lse_x.device) if y_dense is not None else None
            gx_lr = _low_rank_grad_buffers(x_left, x_right) if x_lr else None
            gy_lr = _low_rank_grad_buffers(y_left, y_right) if y_lr else None
            scale = float(grad) / (r * c)
            for s in range(0, r, step):
                dx, dy = rows_backward(operand_rows(x_dense, x_lr, s, s + step), operand_rows(y_dense, y_lr, s, s + step),
                                       lse_x[s : s + step], lse_y[s : s + step], scale, impl)
                accumulate_operand_grad(dx, gx_dense, x_lr, gx_lr, s, s + step)
                accumulate_operand_grad(dy, gy_dense, y_lr, gy_lr, s, s + step)

            def cast(g, ref):
                return None if g is None or ref is None else g.to(ref.dtype)

            return (None, None,
                    cast(gx_dense, x_dense), cast(gx_lr and gx_lr[0], x_left), cast(gx_lr and gx_lr[1], x_right), None,
                    cast(gy_dense, y_dense), cast(gy_lr and gy_lr[0], y_left), cast(gy_lr and gy_lr[1], y_right), None)


def reference_softmax_l1(x, y) -> torch.Tensor:
    x = x.dense() if isinstance(x, LowRank) else x
    y = y.dense() if isinstance(y, LowRank) else y
    return torch.nn.functional.l1_loss(torch.softmax(x, dim=1), torch.softmax(y, dim=1))


def softmax_l1(x, y, impl: str = "auto", workspace_bytes: int | None = None) -> torch.Tensor:
    """``mean |softmax_rows(x) - softmax_rows(y)|``; x, y: [R, C] tensors or LowRank operands."""
    if tuple(x.shape) != tuple(y.shape) or len(x.shape) != 2:
        raise ValueError(f"softmax_l1 needs two [R, C] operands of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    device = (x.left if isinstance(x, LowRank) else x).device
    impl = resolve_impl(impl, device)
    if impl == "reference":
        return reference_softmax_l1(x, y)
    return SoftmaxL1.apply(impl, workspace_bytes, *_unpack(x), *_unpack(y))
