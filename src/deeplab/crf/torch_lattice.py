"""The permutohedral lattice in pure torch (any device, differentiable by autograd).

Same construction as deeplab.crf.lattice (numba), vectorised: simplices by sorting-free rank
comparisons, vertices and blur neighbours by ``torch.unique`` over integer keys, splat with
``index_add_``, blur and slice with gathers. Used for CUDA tensors; on CPU the numba kernels are faster.
"""

from __future__ import annotations

import math

import torch

from deeplab.crf.meanfield import normalization_weights


def _lookup(keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Row index of every query row in keys (rows unique), or len(keys) if absent. int64 (Q,)."""
    both = torch.cat([keys, queries])
    _, inverse = torch.unique(both, dim=0, return_inverse=True)
    where = torch.full((int(inverse.max()) + 1,), len(keys), dtype=torch.long, device=keys.device)
    where[inverse[: len(keys)]] = torch.arange(len(keys), device=keys.device)
    return where[inverse[len(keys) :]]


class TorchLattice:
    """Features (N, D) float (already divided by the stds) embedded in the permutohedral lattice."""

    def __init__(self, features: torch.Tensor):
        f = features.detach().to(torch.float64)
        n, d = f.shape
        d1 = d + 1
        dev = f.device
        self.n, self.d = n, d
        scale = torch.tensor(
            [math.sqrt(2.0 / 3.0) * d1 / math.sqrt((j + 1.0) * (j + 2.0)) for j in range(d)],
            dtype=torch.float64,
            device=dev,
        )
        cf = f * scale  # (N, D)
        suffix = torch.flip(torch.cumsum(torch.flip(cf, [1]), 1), [1])  # sum_{k >= j} cf_k
        elevated = torch.zeros((n, d1), dtype=torch.float64, device=dev)
        elevated[:, 0] = suffix[:, 0]
        j = torch.arange(1, d1, dtype=torch.float64, device=dev)
        after = torch.cat([suffix[:, 1:], torch.zeros((n, 1), dtype=torch.float64, device=dev)], 1)
        elevated[:, 1:] = after - j * cf
        v = elevated / d1
        up, down = torch.ceil(v) * d1, torch.floor(v) * d1
        rem0 = torch.where(up - elevated < elevated - down, up, down).round().long()
        total = (rem0 // d1).sum(1, keepdim=True)
        diff = elevated - rem0
        # rank_j = #{k > j: diff_k > diff_j} + #{k < j: diff_k >= diff_j}
        greater = diff[:, None, :] > diff[:, :, None]  # [i, j, k]: diff_k > diff_j
        geq = diff[:, None, :] >= diff[:, :, None]
        kk = torch.arange(d1, device=dev)
        after_j = kk[None, :] > kk[:, None]  # [j, k]: k > j
        rank = (greater & after_j).sum(2) + (geq & ~after_j & (kk[None, :] != kk[:, None])).sum(2)
        rank = rank + total
        low, high = rank < 0, rank > d
        rank = torch.where(low, rank + d1, torch.where(high, rank - d1, rank))
        rem0 = torch.where(low, rem0 + d1, torch.where(high, rem0 - d1, rem0))
        vals = (elevated - rem0) / d1
        bary = torch.zeros((n, d1 + 1), dtype=torch.float64, device=dev)
        bary.scatter_add_(1, d - rank, vals)
        bary.scatter_add_(1, d - rank + 1, -vals)
        bary[:, 0] += 1.0 + bary[:, d1]
        self.bary = bary[:, :d1].to(torch.float32)  # (N, D+1)
        r = torch.arange(d1, device=dev)
        # vertex r: rem0 + (r if rank <= d - r else r - d1), first D coordinates
        shift = torch.where(rank[:, None, :d] <= d - r[None, :, None], r[None, :, None], r[None, :, None] - d1)
        keys = (rem0[:, None, :d] + shift).reshape(n * d1, d)
        self.keys, inverse = torch.unique(keys, dim=0, return_inverse=True)
        self.offset = inverse.reshape(n, d1)  # (N, D+1) int64
        m = len(self.keys)
        self.m = m
        nbrs = []
        for axis in range(d1):
            delta = torch.full((d,), -1, dtype=torch.long, device=dev)
            if axis < d:
                delta[axis] = d
            nbrs.append(self.keys + delta)
            nbrs.append(self.keys - delta)
        self.neighbours = _lookup(self.keys, torch.cat(nbrs)).reshape(d1, 2, m)  # m = missing (zero row)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))

    def filter(
        self,
        values: torch.Tensor,
        in_weight: torch.Tensor | None = None,
        out_weight: torch.Tensor | None = None,
        reverse: bool = False,
    ) -> torch.Tensor:
        """diag(out_weight) alpha S^T B S diag(in_weight) values; values (N, C) -> (N, C), differentiable."""
        n, c = values.shape
        w_in = self.bary.to(values.dtype)
        if in_weight is not None:
            w_in = w_in * in_weight[:, None].to(values.dtype)
        contrib = (values[:, None, :] * w_in[:, :, None]).reshape(n * (self.d + 1), c)
        verts = values.new_zeros((self.m + 1, c)).index_add(0, self.offset.reshape(-1), contrib)
        zero = values.new_zeros((1, c))
        axes = range(self.d, -1, -1) if reverse else range(self.d + 1)
        for axis in axes:
            n1, n2 = self.neighbours[axis]
            verts = torch.cat([verts[: self.m] + 0.5 * (verts[n1] + verts[n2]), zero])
        w_out = self.bary.to(values.dtype) * self.alpha
        if out_weight is not None:
            w_out = w_out * out_weight[:, None].to(values.dtype)
        return (verts[self.offset] * w_out[:, :, None]).sum(1)


class TorchKernel:
    """Normalised Gaussian kernel (see deeplab.crf.meanfield) with a TorchLattice. apply: (N, L) -> (N, L)."""

    def __init__(self, features: torch.Tensor, normalization: str = "NORMALIZE_SYMMETRIC"):
        self.lattice = TorchLattice(features)
        ones = torch.ones((self.lattice.n, 1), dtype=torch.float32, device=features.device)
        raw = self.lattice.filter(ones)[:, 0]
        self.in_weight, self.out_weight = normalization_weights(raw, normalization)

    def apply(self, q: torch.Tensor) -> torch.Tensor:
        return self.lattice.filter(q, self.in_weight, self.out_weight)
