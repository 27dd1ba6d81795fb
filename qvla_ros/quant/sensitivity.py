# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Action-space channel sensitivity (paper Eq. 4): exact, first-order proxy, and hybrid.

s[b, c] of layer L = E_x || A(x; only row c of L at b bits) - A(x; FP) ||^2, with A the whole
normalized action chunk (B, H, A). Quantizing one row c changes only output channel c, by the
known perturbation dy_c = x . (Q_b(w_c) - w_c), so:

* exact: add dy_c to channel c through a forward hook and rerun the network, for a batch of
  rows at once (one replica of the calibration batch per row), never once per row;
* proxy: with K random projections v ~ N(0, I), g = d<v, A>/dy (one backward per v for all
  layers), proxy[b, c] = mean_v (sum_t g_{c,t} dy_{b,c,t})^2, unbiased for ||J dy||^2
  (no isotropy shortcut);
* hybrid: proxy everywhere, then exact for the top ``refine_fraction`` of rows per bit,
  ranked globally across layers.

Exact work is split into shards (layer x rows x bit) that run independently and merge: one
process after another, or as Ray tasks (``qvla_ros.quant.ray_exec``), each finished shard kept
in a ``ShardStore`` so that an interrupted measurement resumes.
``rounding`` = 'gptq' measures every row with its GPTQ delta instead of its RTN delta (see
``qvla_ros.quant.rounding``); it needs each layer's input Hessian, collected once.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Tuple

import torch
from tqdm.auto import tqdm

from qvla_ros.core.spec import check_bits, QuantSpec
from qvla_ros.quant.calibration import byte_groups, collect_hessians
from qvla_ros.quant.policy import (Batch, batch_size, capture_io, hooked, QuantPolicy,
                                   repeat_batch, split_batch)
from qvla_ros.quant.prepared import weight_input
from qvla_ros.quant.rounding import check_rounding, rounded_delta

Hessians = Optional[Mapping[str, torch.Tensor]]  # {layer: (K, K)}, for gptq rounding


class Method(str, Enum):
    """How sensitivities are measured."""

    EXACT = 'exact'
    PROXY = 'proxy'
    HYBRID = 'hybrid'


@dataclass(frozen=True)
class SensitivityConfig:
    """Knobs of the measurement; ``bits`` are the rows of every score tensor."""

    bits: Tuple[int, ...] = (0, 2, 4, 8)
    method: Method = Method.HYBRID
    projections: int = 8
    refine_fraction: float = 0.05
    rows_per_pass: int = 64
    samples_per_pass: int = 32
    seed: int = 0
    spec: QuantSpec = QuantSpec()
    rounding: str = 'rtn'
    progress: bool = False
    max_delta_bytes: int = 4 << 30  # proxy: deltas held at once (a group of layers)

    def __post_init__(self):
        object.__setattr__(self, 'method', Method(self.method))
        check_rounding(self.rounding)
        object.__setattr__(self, 'bits', tuple(int(b) for b in self.bits))
        for b in self.bits:
            if check_bits(b) == 16:
                raise ValueError('16 bits has zero sensitivity by definition; leave it out of '
                                 'SensitivityConfig.bits')
        if len(set(self.bits)) != len(self.bits) or not self.bits:
            raise ValueError(f'SensitivityConfig.bits must be distinct and non-empty, got '
                             f'{self.bits}')
        if not 0.0 <= self.refine_fraction <= 1.0:
            raise ValueError(f'refine_fraction must be in [0, 1], got {self.refine_fraction}')
        for name in ('projections', 'rows_per_pass', 'samples_per_pass', 'max_delta_bytes'):
            if getattr(self, name) < 1:
                raise ValueError(f'SensitivityConfig.{name} must be >= 1')


@dataclass(frozen=True)
class Shard:
    """One independent unit of exact work: rows [start, stop) of ``layer`` at ``bits``.

    ``rows`` (sorted) names the rows instead, for the scattered rows hybrid refines.
    """

    layer: str
    start: int
    stop: int
    bits: int
    rows: Tuple[int, ...] = ()

    def row_index(self) -> torch.Tensor:
        """Return the shard's rows as a 1-D int64 tensor."""
        if self.rows:
            return torch.tensor(self.rows, dtype=torch.int64)
        return torch.arange(self.start, self.stop)


OnResult = Callable[[Shard, torch.Tensor], None]


class Executor(Protocol):
    """Runs exact shards somewhere and reports each result as it finishes."""

    def run_shards(self, policy: QuantPolicy, batch: Batch, cfg: 'SensitivityConfig',
                   shards: List[Shard], hessians: Mapping[str, torch.Tensor],
                   on_result: OnResult) -> None:
        """Call ``on_result(shard, scores)`` once per shard, in any order."""


class ShardSink(Protocol):
    """Where finished shards are kept (``qvla_ros.quant.shard_store.ShardStore``)."""

    def done(self) -> Dict[Shard, torch.Tensor]:
        """Return the shards finished so far."""

    def put(self, shard: Shard, scores: torch.Tensor) -> None:
        """Keep one finished shard."""


def weight_delta(weight: torch.Tensor, bits: int, cfg: SensitivityConfig,
                 hessian: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Return Q_b(W) - W (N, K) with every row at ``bits`` under ``cfg``'s rounding."""
    return rounded_delta(weight, bits, cfg.spec, cfg.rounding, hessian)


def _layer_hessians(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                    hessians: Hessians) -> Hessians:
    """Return the layer input Hessians gptq rounding needs (collected if not given)."""
    if cfg.rounding != 'gptq' or hessians is not None:
        return hessians
    return collect_hessians(policy, batch)


def make_shards(out_features: Dict[str, int], bits: Iterable[int],
                rows_per_shard: int) -> List[Shard]:
    """Cut every (layer, bit) into shards of at most ``rows_per_shard`` rows."""
    return [Shard(name, s, min(s + rows_per_shard, n), b)
            for name, n in out_features.items() for b in bits
            for s in range(0, n, rows_per_shard)]


def _exact_rows(policy: QuantPolicy, layer, x, batch: Batch, a_fp: torch.Tensor,
                rows: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Return sum over samples of ||A_c - A_fp||^2 for each row in ``rows`` (R,).

    x (B', ..., K) layer input (B' = B, or B x cameras); delta (R, K) = Q_b(w_c) - w_c for
    those rows. The batch is tiled replica-major, so each replica's B' rows stay together.
    """
    r = rows.numel()
    n = batch_size(batch)
    dy = torch.einsum('b...k,rk->rb...', x, delta)  # (R, B, ...)

    def hook(mod, args, out):
        # (R, B', ..., N): B' = B, or B x cameras in a tower that folds cameras into the batch
        out = out.clone().view(r, out.shape[0] // r, *out.shape[1:])
        for i in range(r):
            out[i, ..., rows[i]] += dy[i]
        return out.view(-1, *out.shape[2:])
    with torch.no_grad(), hooked(layer, hook):
        a = policy.action_tensor(repeat_batch(batch, r))  # (R*B, H, A)
    diff = a.view(r, n, *a.shape[1:]) - a_fp.unsqueeze(0)
    return diff.pow(2).flatten(2).sum(-1).sum(-1)  # (R,)


def run_shard(policy: QuantPolicy, batch: Batch, shard: Shard, cfg: SensitivityConfig,
              rows: Optional[torch.Tensor] = None, hessian: Optional[torch.Tensor] = None
              ) -> torch.Tensor:
    """Return exact s for the shard's rows (stop - start,), or for ``rows`` if given.

    ``hessian`` (K, K) of the shard's layer is needed for gptq rounding; a subset of rows
    gets the same GPTQ delta as in a full-layer pass (rows are rounded independently).
    """
    layer = policy.quantizable_layers()[shard.layer]
    rows = shard.row_index() if rows is None else rows
    delta_all = weight_delta(layer.weight[rows], shard.bits, cfg, hessian)  # (R, K)
    total = torch.zeros(rows.numel(), dtype=torch.float64)
    n_total = 0
    for part in split_batch(batch, cfg.samples_per_pass):
        x = weight_input(layer, capture_io(policy, layer, part)[0])
        with torch.no_grad():
            a_fp = policy.action_tensor(part)
        for i in range(0, rows.numel(), cfg.rows_per_pass):
            sel = slice(i, i + cfg.rows_per_pass)
            total[sel] += _exact_rows(policy, layer, x, part, a_fp, rows[sel],
                                      delta_all[sel].to(x.dtype)).double()
        n_total += batch_size(part)
    return (total / n_total).float()


class SerialExecutor:
    """Run shards one after another in this process."""

    def run_shards(self, policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                   shards: List[Shard], hessians: Mapping[str, torch.Tensor],
                   on_result: OnResult) -> None:
        """Run every shard here, reporting each as it finishes."""
        for shard in tqdm(shards, desc='exact sensitivity', disable=not cfg.progress):
            on_result(shard, run_shard(policy, batch, shard, cfg,
                                       hessian=hessians.get(shard.layer)))


def run_shards(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig, shards: List[Shard],
               hessians: Mapping[str, torch.Tensor], store: Optional[ShardSink] = None,
               executor: Optional[Executor] = None) -> Dict[Shard, torch.Tensor]:
    """Return {shard: scores} for ``shards``, running only those ``store`` does not hold.

    Each finished shard goes into ``store`` as it completes, so a rerun after a crash
    computes only the missing ones; ``executor`` (default: this process) runs them.
    """
    wanted = set(shards)
    results = {s: v for s, v in (store.done() if store is not None else {}).items()
               if s in wanted}
    todo = [s for s in shards if s not in results]

    def keep(shard: Shard, scores: torch.Tensor) -> None:
        results[shard] = scores
        if store is not None:
            store.put(shard, scores)
    if todo:
        (executor or SerialExecutor()).run_shards(policy, batch, cfg, todo, hessians, keep)
    return results


def exact_sensitivity(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                      hessians: Hessians = None, store: Optional[ShardSink] = None,
                      executor: Optional[Executor] = None) -> Dict[str, torch.Tensor]:
    """Return {layer: (len(bits), N)} exact action-space sensitivities."""
    layers = policy.quantizable_layers()
    hessians = _layer_hessians(policy, batch, cfg, hessians) or {}
    sizes = {k: v.out_features for k, v in layers.items()}
    shards = make_shards(sizes, cfg.bits, cfg.rows_per_pass * 4)
    results = run_shards(policy, batch, cfg, shards, hessians, store, executor)
    return merge_shards(results, sizes, cfg.bits)


def merge_shards(results: Dict[Shard, torch.Tensor], out_features: Dict[str, int],
                 bits: Tuple[int, ...]) -> Dict[str, torch.Tensor]:
    """Assemble shard results into {layer: (len(bits), N)}; every row must be covered."""
    scores = {k: torch.full((len(bits), n), float('nan')) for k, n in out_features.items()}
    for shard, values in results.items():
        scores[shard.layer][bits.index(shard.bits), shard.start:shard.stop] = values
    for name, s in scores.items():
        if torch.isnan(s).any():
            raise ValueError(f'shards do not cover every row of {name}: '
                             f'{int(torch.isnan(s).sum())} entries missing')
    return scores


def proxy_sensitivity(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                      hessians: Hessians = None) -> Dict[str, torch.Tensor]:
    """Return {layer: (len(bits), N)} first-order proxies of the action-space sensitivity.

    The deltas Q_b(W) - W of every bit are len(bits) copies of the weights, so layers are
    measured in consecutive groups of at most ``cfg.max_delta_bytes`` of deltas (one forward
    and ``projections`` backwards per group and calibration part). Every group sees the same
    projections v, so the scores do not depend on the grouping.
    """
    layers = policy.quantizable_layers()
    hessians = _layer_hessians(policy, batch, cfg, hessians) or {}
    sizes = {k: len(cfg.bits) * m.weight.numel() * m.weight.element_size()
             for k, m in layers.items()}
    scores = {}
    for group in byte_groups(sizes, cfg.max_delta_bytes):
        scores.update(_proxy_group(policy, batch, cfg, {k: layers[k] for k in group},
                                   hessians))
    return scores


def _proxy_group(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                 layers: Dict[str, torch.nn.Linear], hessians: Mapping[str, torch.Tensor]
                 ) -> Dict[str, torch.Tensor]:
    """Return the proxy scores {layer: (len(bits), N)} of ``layers`` (one group)."""
    deltas = {k: torch.stack([weight_delta(m.weight, b, cfg, hessians.get(k))
                              for b in cfg.bits])
              for k, m in layers.items()}  # (nb, N, K)
    acc = {k: torch.zeros(len(cfg.bits), m.out_features, dtype=torch.float64)
           for k, m in layers.items()}
    gen = torch.Generator().manual_seed(cfg.seed)  # the same v for every group
    count = 0
    parts = split_batch(batch, cfg.samples_per_pass)
    for part in tqdm(parts, desc='proxy sensitivity', disable=not cfg.progress):
        inputs, outputs = {}, {}

        def make_hook(name):
            def hook(mod, args, out):
                inputs[name] = weight_input(mod, args[0].detach())
                leaf = torch.zeros_like(out, requires_grad=True)
                outputs[name] = leaf
                return out + leaf  # d(.)/d(leaf) == d(.)/d(out)
            return hook
        handles = [m.register_forward_hook(make_hook(k)) for k, m in layers.items()]
        try:
            with torch.enable_grad():
                actions = policy.action_tensor(part)  # (B, H, A)
        finally:
            for h in handles:
                h.remove()
        names = list(layers)
        silent = [k for k in names if k not in outputs]
        if silent:
            raise ValueError(f'layers never called by action_tensor: {silent[:5]}; leave them '
                             'out of quantizable_layers()')
        for _ in range(cfg.projections):
            v = torch.randn(actions.shape, generator=gen).to(actions)
            grads = torch.autograd.grad((actions * v).sum(), [outputs[k] for k in names],
                                        retain_graph=True, allow_unused=True)
            for name, g in zip(names, grads):
                if g is None:
                    continue
                dy = torch.einsum('b...k,znk->zb...n', inputs[name], deltas[name])
                prod = g.unsqueeze(0) * dy  # (nb, B, ..., N)
                inner = prod.reshape(*prod.shape[:2], -1, prod.shape[-1]).sum(2)  # (nb, B, N)
                acc[name] += inner.double().pow(2).sum(1)
        count += batch_size(part) * cfg.projections
    return {k: (v / count).float() for k, v in acc.items()}


def refine_shards(scores: Dict[str, torch.Tensor], bits: Tuple[int, ...], fraction: float,
                  rows_per_shard: int) -> List[Shard]:
    """Return shards of the top ``fraction`` of rows per bit by proxy, ranked across layers."""
    shards = []
    names = list(scores)
    offsets = torch.tensor([0] + [scores[k].shape[1] for k in names]).cumsum(0)
    for bi, b in enumerate(bits):
        flat = torch.cat([scores[k][bi] for k in names])  # all rows, globally
        k_top = int(round(fraction * flat.numel()))
        if k_top == 0:
            continue
        top = torch.topk(flat, k_top).indices
        for li, name in enumerate(names):
            picked = top[(top >= offsets[li]) & (top < offsets[li + 1])] - offsets[li]
            rows = picked.sort().values.tolist()
            shards += [Shard(name, 0, 0, b, tuple(rows[i:i + rows_per_shard]))
                       for i in range(0, len(rows), rows_per_shard)]
    return shards


def hybrid_sensitivity(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
                       hessians: Hessians = None, store: Optional[ShardSink] = None,
                       executor: Optional[Executor] = None):
    """Return (scores, refined) where refined[layer] is a bool (len(bits), N) mask."""
    hessians = _layer_hessians(policy, batch, cfg, hessians) or {}
    scores = proxy_sensitivity(policy, batch, cfg, hessians)
    refined = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in scores.items()}
    shards = refine_shards(scores, cfg.bits, cfg.refine_fraction, cfg.rows_per_pass * 4)
    for shard, values in run_shards(policy, batch, cfg, shards, hessians, store,
                                    executor).items():
        bi, rows = cfg.bits.index(shard.bits), shard.row_index()
        scores[shard.layer][bi, rows] = values
        refined[shard.layer][bi, rows] = True
    return scores, refined


def measure(policy: QuantPolicy, batch: Batch, cfg: SensitivityConfig,
            hessians: Hessians = None, store: Optional[ShardSink] = None,
            executor: Optional[Executor] = None):
    """Return (scores, refined mask or None) with the configured method.

    ``hessians`` {layer: (K, K)} serve gptq rounding; collected from ``batch`` if None.
    Exact shards (all of them, or hybrid's refined rows) run on ``executor`` and are kept in
    ``store`` as they finish.
    """
    if cfg.method is Method.EXACT:
        return exact_sensitivity(policy, batch, cfg, hessians, store, executor), None
    if cfg.method is Method.PROXY:
        return proxy_sensitivity(policy, batch, cfg, hessians), None
    return hybrid_sensitivity(policy, batch, cfg, hessians, store, executor)


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Return 0-based ranks of a 1-D tensor, ties sharing their average rank."""
    _, inverse, counts = torch.unique(v, return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    return (start.double() + (counts.double() - 1) / 2)[inverse]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return the Spearman rank correlation of two tensors of equal size."""
    ra, rb = _ranks(a.flatten()), _ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denom) if denom > 0 else 0.0
