# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Global bit allocation by greedy demotion with incremental costs (paper Eq. 8).

Every row starts at the highest candidate (16). A demotion hi -> lo of row c costs
rho = (s_lo - s_hi) / (cost_hi - cost_lo): the extra action error per budget unit saved,
where cost is bits x in_features (average bits per *parameter*) or real packed bytes
(including scales, zero-points and the row index). Demotions are taken cheapest first from
one global pool until the budget is met; a row's next demotion becomes available once its
previous one is taken, which is what the heap with lazy deletion of Algorithm 1 does.

``greedy_allocate`` computes that order in vectorised form: the pop order of the heap is the
order of the running maximum of rho along each row's chain of demotions (a successor whose
rho is below the value just popped is the next minimum), with ties broken by
(layer index, row, step). ``greedy_allocate_heap`` is the literal heap, kept as the reference.
``lagrangian_lower_bound`` gives an exact lower bound of the same multiple-choice knapsack.
"""

from dataclasses import dataclass
import heapq
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from qvla_ros.core.spec import check_bits
from qvla_ros.kernels.format import row_bytes


@dataclass(frozen=True)
class AllocationConfig:
    """Budget, candidate bits and the pruning guard."""

    target_bits: float = 4.0
    candidates: Tuple[int, ...] = (0, 2, 4, 8, 16)
    budget: str = 'params'            # 'params': bits per parameter; 'bytes': packed bytes
    # At most this fraction of a layer's rows is pruned: per-row sensitivities add up rows
    # changed one at a time, but pruned rows shift their outputs coherently, so many together
    # cost more than the sum says (docs/method.md, the pruning guard).
    max_prune_fraction: float = 0.05
    prune_threshold: Optional[float] = None  # forbid 2 -> 0 when s(0) exceeds it
    group_size: Optional[int] = None  # for byte costs

    def __post_init__(self):
        object.__setattr__(self, 'candidates', tuple(sorted({check_bits(b)
                                                             for b in self.candidates})))
        if len(self.candidates) < 2:
            raise ValueError(f'need at least two candidate bit-widths, got {self.candidates}')
        if self.budget not in ('params', 'bytes'):
            raise ValueError(f"AllocationConfig.budget must be 'params' or 'bytes', got "
                             f'{self.budget!r}')
        if not 0 < self.target_bits <= 16:
            raise ValueError(f'target_bits must be in (0, 16], got {self.target_bits}')
        if not 0.0 <= self.max_prune_fraction <= 1.0:
            raise ValueError(f'max_prune_fraction must be in [0, 1], got '
                             f'{self.max_prune_fraction}')


@dataclass
class Allocation:
    """The chosen bits per row, and how the budget and the objective came out."""

    bits: Dict[str, torch.Tensor]
    achieved_bits: float
    total_sensitivity: float
    budget_used: float
    budget: float
    steps: int


def row_cost(bits: int, in_features: int, budget: str, group_size: Optional[int]) -> float:
    """Return the budget cost of one row: bits x K, or its real packed bytes."""
    if budget == 'params':
        return float(bits * in_features)
    return float(row_bytes(bits, in_features, group_size))


def _tables(scores, sens_bits, in_features, cfg, multiplicity=None):
    """Return per-layer (S (N, m), C (N, m)) with levels ordered high -> low bits.

    ``multiplicity[name]``: how many physical rows one scored row stands for (layer-wise
    allocation scores a whole layer as one row); its costs scale with it.
    """
    levels = sorted(cfg.candidates, reverse=True)
    missing = [b for b in levels if b != 16 and b not in sens_bits]
    if missing:
        raise ValueError(f'candidate bits {missing} have no sensitivity; the file has bits '
                         f'{list(sens_bits)}')
    tables = {}
    for name, s in scores.items():
        n, k = s.shape[1], in_features[name]
        cols = [np.zeros(n) if b == 16 else s[sens_bits.index(b)].double().numpy()
                for b in levels]
        S = np.stack(cols, 1)  # (N, m)
        C = np.tile([row_cost(b, k, cfg.budget, cfg.group_size) for b in levels], (n, 1))
        tables[name] = (S, C * (multiplicity or {}).get(name, 1))
    return levels, tables


def greedy_allocate(scores: Dict[str, torch.Tensor], sens_bits: Sequence[int],
                    in_features: Dict[str, int], cfg: AllocationConfig,
                    multiplicity: Optional[Dict[str, int]] = None) -> Allocation:
    """Return the Eq. 8 greedy allocation, computed in vectorised form."""
    sens_bits = list(sens_bits)
    mult = multiplicity or {}
    levels, tables = _tables(scores, sens_bits, in_features, cfg, mult)
    names = sorted(scores)
    keys, layer_id, row_id, step_id, saved, prune = [], [], [], [], [], []
    for li, name in enumerate(names):
        S, C = tables[name]
        dc = C[:, :-1] - C[:, 1:]  # (N, m-1) budget saved by each step
        rho = (S[:, 1:] - S[:, :-1]) / np.maximum(dc, 1e-30)
        eff = np.maximum.accumulate(rho, axis=1)
        n, m1 = rho.shape
        keys.append(eff.ravel())
        layer_id.append(np.full(n * m1, li))
        row_id.append(np.repeat(np.arange(n), m1))
        step_id.append(np.tile(np.arange(m1), n))
        saved.append(dc.ravel())
        is_prune = np.zeros((n, m1), bool)
        if levels[-1] == 0:
            is_prune[:, -1] = True
            if cfg.prune_threshold is not None:
                # A forbidden prune step (s(0) above the threshold) is never taken; it is the
                # last step of its row, so nothing else depends on it.
                forbidden = is_prune & (S[:, -1:] > cfg.prune_threshold)
                keys[-1] = np.where(forbidden.ravel(), np.inf, keys[-1])
        prune.append(is_prune.ravel())
    key, lid, rid, sid = (np.concatenate(a) for a in (keys, layer_id, row_id, step_id))
    dsave, is_prune = np.concatenate(saved), np.concatenate(prune)
    order = np.lexsort((sid, rid, lid, key))
    valid = np.isfinite(key[order])
    caps = {li: int(cfg.max_prune_fraction * scores[n].shape[1]) for li, n in enumerate(names)}
    pr = order[is_prune[order] & valid]
    if pr.size:
        rank = _rank_within(lid[pr])
        over = rank >= np.array([caps[i] for i in lid[pr]])
        blocked = np.zeros(key.size, bool)
        blocked[pr[over]] = True
        valid &= ~blocked[order]
    order = order[valid]
    total0 = sum(float(tables[n][1][:, 0].sum()) for n in names)
    params = sum(scores[n].shape[1] * in_features[n] * mult.get(n, 1) for n in names)
    budget = _budget(cfg, params)
    remaining = total0 - np.cumsum(dsave[order])
    hit = np.nonzero(remaining <= budget + 1e-9)[0]
    if total0 <= budget:
        take = 0
    elif hit.size == 0:
        floor = _avg_bits(remaining[-1] if remaining.size else total0, cfg, params)
        raise ValueError(f'target {cfg.target_bits} bits per parameter is not reachable with '
                         f'candidates {cfg.candidates} and the pruning guard; the minimum is '
                         f'{floor:.3f}')
    else:
        take = int(hit[0]) + 1
    taken = order[:take]
    return _result(names, scores, levels, tables, lid[taken], rid[taken], in_features,
                   budget, total0 - float(dsave[taken].sum()), take, mult)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """Return, for each position, how many earlier positions share its group."""
    rank = np.zeros(groups.size, np.int64)
    seen: Dict[int, int] = {}
    for i, g in enumerate(groups.tolist()):
        rank[i] = seen.get(g, 0)
        seen[g] = rank[i] + 1
    return rank


def _budget(cfg, params) -> float:
    if cfg.budget == 'params':
        return cfg.target_bits * params
    # bytes: the target in bits per parameter, expressed as bytes of real storage
    return cfg.target_bits * params / 8.0


def _avg_bits(cost, cfg, params) -> float:
    return cost / params if cfg.budget == 'params' else 8.0 * cost / params


def _result(names, scores, levels, tables, lids, rids, in_features, budget, used, steps,
            multiplicity=None):
    bits, total_s, bit_params, params = {}, 0.0, 0.0, 0
    for li, name in enumerate(names):
        n = scores[name].shape[1]
        k = in_features[name] * (multiplicity or {}).get(name, 1)
        count = np.bincount(rids[lids == li], minlength=n)  # steps taken per row
        lv = np.asarray(levels)[count]
        bits[name] = torch.from_numpy(lv.astype(np.uint8))
        total_s += float(tables[name][0][np.arange(n), count].sum())
        bit_params += float(lv.sum()) * k
        params += n * k
    return Allocation(bits, bit_params / params, total_s, used, budget, steps)


def greedy_allocate_heap(scores: Dict[str, torch.Tensor], sens_bits: Sequence[int],
                         in_features: Dict[str, int], cfg: AllocationConfig) -> Allocation:
    """Literal Algorithm 1: a global min-heap of incremental costs with lazy deletion."""
    sens_bits = list(sens_bits)
    levels, tables = _tables(scores, sens_bits, in_features, cfg)
    names = sorted(scores)
    level = {n: np.zeros(scores[n].shape[1], np.int64) for n in names}
    pruned = {n: 0 for n in names}
    caps = {n: int(cfg.max_prune_fraction * scores[n].shape[1]) for n in names}
    heap: List[tuple] = []

    def push(li, row, j):
        S, C = tables[names[li]]
        if j + 1 >= len(levels):
            return
        if (levels[j + 1] == 0 and cfg.prune_threshold is not None
                and S[row, j + 1] > cfg.prune_threshold):
            return
        rho = (S[row, j + 1] - S[row, j]) / max(C[row, j] - C[row, j + 1], 1e-30)
        heapq.heappush(heap, (rho, li, row, j))
    for li, name in enumerate(names):
        for row in range(scores[name].shape[1]):
            push(li, row, 0)
    used = sum(float(tables[n][1][:, 0].sum()) for n in names)
    params = sum(scores[n].shape[1] * in_features[n] for n in names)
    budget = _budget(cfg, params)
    steps = 0
    while used > budget + 1e-9 and heap:
        rho, li, row, j = heapq.heappop(heap)
        name = names[li]
        if level[name][row] != j:
            continue  # stale entry (lazy deletion)
        if levels[j + 1] == 0:
            if pruned[name] >= caps[name]:
                continue
            pruned[name] += 1
        C = tables[name][1]
        used -= C[row, j] - C[row, j + 1]
        level[name][row] = j + 1
        steps += 1
        push(li, row, j + 1)
    if used > budget + 1e-9:
        raise ValueError(f'target {cfg.target_bits} bits per parameter is not reachable with '
                         f'candidates {cfg.candidates} and the pruning guard')
    lids = np.concatenate([np.full(int(level[n].sum()), li) for li, n in enumerate(names)])
    rids = np.concatenate([np.repeat(np.arange(level[n].size), level[n]) for n in names])
    return _result(names, scores, levels, tables, lids, rids, in_features, budget, used, steps)


def lagrangian_lower_bound(scores: Dict[str, torch.Tensor], sens_bits: Sequence[int],
                           in_features: Dict[str, int], cfg: AllocationConfig,
                           iters: int = 60) -> float:
    """Return max over lambda >= 0 of sum_c min_b (s_c(b) + lambda cost_c(b)) - lambda B.

    Weak duality makes this a lower bound of the optimal total sensitivity of the same
    multiple-choice knapsack (without the pruning guard, which only raises the optimum).
    """
    levels, tables = _tables(scores, list(sens_bits), in_features, cfg)
    names = sorted(scores)
    S = np.concatenate([tables[n][0] for n in names])  # (R, m)
    C = np.concatenate([tables[n][1] for n in names])
    params = sum(scores[n].shape[1] * in_features[n] for n in names)
    budget = _budget(cfg, params)

    def dual(lam):
        v = S + lam * C
        idx = v.argmin(1)
        return float(v[np.arange(v.shape[0]), idx].sum() - lam * budget), float(
            C[np.arange(C.shape[0]), idx].sum() - budget)
    lo, hi = 0.0, 1.0
    while dual(hi)[1] > 0 and hi < 1e30:
        hi *= 10.0
    best = max(dual(lo)[0], dual(hi)[0])
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        val, sub = dual(mid)
        best = max(best, val)
        lo, hi = (mid, hi) if sub > 0 else (lo, mid)
    return best
