"""Every FNAC term that reads the pair logits L, in one memory-bounded pass over row blocks.

For L [R, C] (R local visual rows, C audio columns; row i's positive is column offset + i):
  ce_rows = CE(L, offset + arange(R))                      (mean over rows)
  ce_cols = CE(L^T, arange(C))        only when L is the full square matrix (offset 0, R == C)
  l1[k]   = mean |softmax_rows(G_k) - softmax_rows(L)|     for each low-rank G_k (FNS-1, FNS-2)
One autograd node owns all of them so that the backward builds a single [R, C] gradient of L
(separate nodes would each return one and autograd would hold two at once while summing them).
The softmax-L1 row blocks run on the ``torch`` or ``triton`` row primitives of softmax_l1.
"""

from __future__ import annotations

import torch

from avloc.ops.dispatch import accumulation_dtype, no_autocast, resolve_impl, rows_per_chunk
from avloc.ops.softmax_l1 import LowRank, accumulate_operand_grad, operand_rows, rows_backward, rows_forward


class LogitTerms(torch.autograd.Function):
    @staticmethod
    def forward(ctx, impl, workspace_bytes, offset, column_ce, logits, *factors):
        scales = factors[-1]
        factors = factors[:-1]
        pairs = [(factors[2 * k], factors[2 * k + 1], scales[k]) for k in range(len(scales))]
        r, c = logits.shape
        acc = accumulation_dtype(logits.dtype)
        device = logits.device
        step = rows_per_chunk(c * (torch.finfo(acc).bits // 8) * (4 + 4 * len(pairs)), workspace_bytes)
        rows = torch.arange(r, device=device)
        lse = torch.empty(r, dtype=acc, device=device)
        lse_pairs = torch.empty(len(pairs), r, dtype=acc, device=device)
        ce_rows = torch.zeros((), dtype=acc, device=device)
        l1 = torch.zeros(len(pairs), dtype=acc, device=device)
        col_max = torch.full((c,), float("-inf"), dtype=acc, device=device)
        col_sum = torch.zeros(c, dtype=acc, device=device)
        for s in range(0, r, step):
            block = logits[s : s + step].to(acc)
            n = block.shape[0]
            lse[s : s + n] = torch.logsumexp(block, dim=1)
            ce_rows += (lse[s : s + n] - block[torch.arange(n, device=device), offset + rows[s : s + n]]).sum()
            if column_ce:
                new_max = torch.maximum(col_max, block.max(dim=0).values)
                col_sum = col_sum * torch.exp(col_max - new_max) + torch.exp(block - new_max).sum(dim=0)
                col_max = new_max
            for k, pair in enumerate(pairs):
                diff, lse_g, _ = rows_forward(operand_rows(None, pair, s, s + step), block, impl)
                l1[k] += diff.sum()
                lse_pairs[k, s : s + n] = lse_g
        col_lse = col_max + torch.log(col_sum) if column_ce else None
        ce_cols = (col_lse - logits.diagonal().to(acc)).sum() / c if column_ce else torch.zeros((), dtype=acc, device=device)
        ctx.save_for_backward(logits, lse, lse_pairs, col_lse, *factors)
        ctx.meta = (impl, step, offset, column_ce, scales)
        return (ce_rows / r, ce_cols, *(l1 / (r * c)).unbind(0))

    @staticmethod
    def backward(ctx, g_rows, g_cols, *g_l1):
        logits, lse, lse_pairs, col_lse, *factors = ctx.saved_tensors
        with no_autocast(logits.device):
            impl, step, offset, column_ce, scales = ctx.meta
            pairs = [(factors[2 * k], factors[2 * k + 1], scales[k]) for k in range(len(scales))]
            r, c = logits.shape
            device = logits.device
            acc = lse.dtype
            grad_logits = torch.empty(r, c, dtype=acc, device=device)
            pair_grads = [(torch.zeros(p[0].shape, dtype=acc, device=device), torch.zeros(p[1].shape, dtype=acc, device=device)) for p in pairs]
            w_rows = float(g_rows) / r if g_rows is not None else 0.0
            w_cols = float(g_cols) / c if (g_cols is not None and column_ce) else 0.0
            for s in range(0, r, step):
                block = logits[s : s + step].to(acc)
                n = block.shape[0]
                idx = torch.arange(n, device=device)
                grad = torch.exp(block - lse[s : s + n, None]).mul_(w_rows)
                grad[idx, offset + s + idx] -= w_rows
                if column_ce:
                    grad.add_(torch.exp(block - col_lse[None, :]), alpha=w_cols)
                    grad[idx, s + idx] -= w_cols
                for k, pair in enumerate(pairs):
                    if g_l1[k] is None:
                        continue
                    dg, dl = rows_backward(operand_rows(None, pair, s, s + step), block, lse_pairs[k, s : s + n], lse[s : s + n],
                                           float(g_l1[k]) / (r * c), impl)
                    grad += dl
                    accumulate_operand_grad(dg, None, pair, pair_grads[k], s, s + step)
                grad_logits[s : s + n] = grad
            factor_grads = []
            for (left, right, _), (gl, gr) in zip(pairs, pair_grads):
                factor_grads += [gl.to(left.dtype), gr.to(right.dtype)]
            return (None, None, None, None, grad_logits.to(logits.dtype), *factor_grads, None)


def logit_terms(logits: torch.Tensor, offset: int = 0, column_ce: bool = True, low_rank=(), impl: str = "auto",
                workspace_bytes: int | None = None):
    """``(ce_rows, ce_cols, *l1_k)`` as described in the module docstring (ce_cols is 0 unless column_ce)."""
    r, c = logits.shape
    if column_ce and (offset != 0 or r != c):
        raise ValueError("column cross-entropy on the same matrix needs the full square logits (offset 0)")
    if offset < 0 or offset + r > c:
        raise ValueError(f"rows [{offset}, {offset + r}) do not fit in {c} columns")
    impl = resolve_impl(impl, logits.device)
    if impl == "reference":
        return reference_logit_terms(logits, offset, column_ce, low_rank)
    factors = []
    for op in low_rank:
        if not isinstance(op, LowRank) or tuple(op.shape) != (r, c):
            raise ValueError(f"low-rank operands must be LowRank of shape {(r, c)}")
        factors += [op.left, op.right]
    scales = tuple(float(op.scale) for op in low_rank)
    return LogitTerms.apply(impl, workspace_bytes, int(offset), bool(column_ce), logits, *factors, scales)


def reference_logit_terms(logits, offset=0, column_ce=True, low_rank=()):
    f = torch.nn.functional
    targets = offset + torch.arange(logits.shape[0], device=logits.device)
    ce_rows = f.cross_entropy(logits, targets)
    ce_cols = f.cross_entropy(logits.t(), targets) if column_ce else logits.new_zeros(())
    soft = torch.softmax(logits, dim=1)
    return (ce_rows, ce_cols, *(f.l1_loss(torch.softmax(op.dense(), dim=1), soft) for op in low_rank))
