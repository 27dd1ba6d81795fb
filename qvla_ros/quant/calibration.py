# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Forward-hook collectors of per-layer input statistics over calibration batches.

A layer's statistics hold X^T X (K, K) in float64 and up to ``max_rows`` sampled input rows;
for a 7B model that is tens of GB over all layers. ``StreamedInputs`` therefore gathers them
for one group of consecutive layers at a time (one calibration pass per group, groups bounded
by ``max_bytes``) and keeps only the group last read; a small model fits in one group and is
gathered once.
"""

from dataclasses import dataclass
import time
from typing import Dict, Iterator, List, Mapping, MutableMapping, Optional, Sequence

import torch

from qvla_ros.quant.policy import Batch, QuantPolicy, split_batch
from qvla_ros.quant.prepared import stat_input

DEFAULT_MAX_BYTES = 4 << 30  # statistics held at once by StreamedInputs


@dataclass
class LayerInputs:
    """Input statistics of one linear: sampled rows (T, K), absmax (K,), X^T X (K, K), count."""

    sample: torch.Tensor
    absmax: torch.Tensor
    xtx: torch.Tensor
    count: int

    def hessian(self) -> torch.Tensor:
        """Return H = 2/n X^T X (the GPTQ / OBS Hessian of the layer's squared error)."""
        return 2.0 * self.xtx / max(self.count, 1)


def stat_bytes(in_features: int, max_rows: int) -> int:
    """Return the bytes one layer's statistics hold: X^T X (float64), sample rows, absmax."""
    return 8 * in_features * in_features + 4 * (max_rows + 1) * in_features


def byte_groups(sizes: Mapping[str, int], max_bytes: int) -> List[List[str]]:
    """Split the names, in order, into consecutive groups of at most ``max_bytes`` in all.

    A name larger than ``max_bytes`` on its own forms a group of one.
    """
    if max_bytes < 1:
        raise ValueError(f'max_bytes must be >= 1, got {max_bytes}')
    groups: List[List[str]] = []
    used = 0
    for name, size in sizes.items():
        if not groups or used + size > max_bytes:
            groups.append([])
            used = 0
        groups[-1].append(name)
        used += size
    return groups


class _RowSampler:
    """Uniform sample of at most ``max_rows`` rows without replacement, over streamed parts.

    Every row gets a uniform random key and the rows with the smallest keys are kept, so the
    sample does not depend on how the rows were split into passes.
    """

    def __init__(self, max_rows: int, gen: torch.Generator):
        self.max_rows, self.gen = max_rows, gen
        self.keys = torch.empty(0)
        self.rows: Optional[torch.Tensor] = None

    def add(self, x: torch.Tensor) -> None:
        """Offer rows x (T, K)."""
        keys = torch.cat([self.keys, torch.rand(x.shape[0], generator=self.gen)])
        rows = x if self.rows is None else torch.cat([self.rows, x])
        if keys.numel() > self.max_rows:
            keep = torch.topk(keys, self.max_rows, largest=False).indices.sort().values
            keys, rows = keys[keep], rows[keep]
        self.keys, self.rows = keys, rows


def collect_inputs(policy: QuantPolicy, batch: Batch, max_rows: int = 2048,
                   samples_per_pass: int = 32, seed: int = 0,
                   layers: Optional[Sequence[str]] = None) -> Dict[str, LayerInputs]:
    """Run the calibration batch once with hooks on ``layers`` (default: every quantizable one).

    Token rows of each layer input are flattened to (rows, K); ``max_rows`` of them are kept
    (uniformly at random, the same rows whichever layers are gathered together) for
    output-error searches, while absmax and X^T X see every row.
    """
    every = policy.quantizable_layers()
    names = list(every) if layers is None else list(layers)
    unknown = [k for k in names if k not in every]
    if unknown:
        raise ValueError(f'not quantizable layers: {unknown[:5]}; expected names from '
                         'quantizable_layers()')
    position = {k: i for i, k in enumerate(every)}
    samplers = {k: _RowSampler(max_rows, torch.Generator().manual_seed(seed + position[k]))
                for k in names}
    stats: Dict[str, list] = {}

    def make_hook(name):
        def hook(mod, args, out):
            x = stat_input(mod, args[0].detach())
            x = x.reshape(-1, x.shape[-1]).double()  # (T, K)
            samplers[name].add(x.float())
            if name not in stats:
                stats[name] = [x.abs().amax(0), x.T @ x, x.shape[0]]
            else:
                s = stats[name]
                s[0] = torch.maximum(s[0], x.abs().amax(0))
                s[1] += x.T @ x
                s[2] += x.shape[0]
        return hook
    handles = [every[k].register_forward_hook(make_hook(k)) for k in names]
    try:
        with torch.no_grad():
            for part in split_batch(batch, samples_per_pass):
                policy.action_tensor(part)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name in names:
        if name not in stats:
            raise ValueError(f'layer {name} was never called by action_tensor')
        absmax, xtx, count = stats.pop(name)
        rows = samplers[name].rows
        assert rows is not None  # set by every call, and the layer was called
        out[name] = LayerInputs(rows, absmax.float(), xtx, count)
    return out


class StreamedInputs(Mapping):
    """{layer: LayerInputs}, gathered for a group of consecutive layers when one is read.

    Groups hold at most ``max_bytes`` of statistics (``stat_bytes``); only the group last read
    is kept, so reading the layers in order costs one calibration pass per group. ``passes``
    counts the passes; their seconds are added to ``timings['inputs']`` when given.
    """

    def __init__(self, policy: QuantPolicy, batch: Batch, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_rows: int = 2048, samples_per_pass: int = 32, seed: int = 0,
                 timings: Optional[MutableMapping[str, float]] = None):
        layers = policy.quantizable_layers()
        self._policy, self._batch, self._timings = policy, batch, timings
        self._kw = dict(max_rows=max_rows, samples_per_pass=samples_per_pass, seed=seed)
        sizes = {k: stat_bytes(m.in_features, max_rows) for k, m in layers.items()}
        self.groups = byte_groups(sizes, max_bytes)
        self._group_of = {k: i for i, g in enumerate(self.groups) for k in g}
        self._held: Dict[str, LayerInputs] = {}
        self._held_group: Optional[int] = None
        self.passes = 0

    def bind(self, policy: QuantPolicy) -> None:
        """Gather later passes from ``policy``, a model with the same float weights.

        Callers that quantize a model in place after reading its statistics rebind the
        statistics to a fresh float copy before they are read again.
        """
        self._policy = policy

    def __getitem__(self, name: str) -> LayerInputs:
        group = self._group_of[name]  # KeyError for names that are not quantizable layers
        if group != self._held_group:
            self._held, self._held_group = {}, None  # free the old group before the pass
            t0 = time.perf_counter()
            self._held = collect_inputs(self._policy, self._batch, layers=self.groups[group],
                                        **self._kw)
            self._held_group = group
            self.passes += 1
            if self._timings is not None:
                self._timings['inputs'] = (self._timings.get('inputs', 0.0)
                                           + time.perf_counter() - t0)
        return self._held[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._group_of)

    def __len__(self) -> int:
        return len(self._group_of)


class LayerHessians(Mapping):
    """{layer: H = 2/n X^T X (K, K)}, each computed when it is read and not kept.

    GPTQ rounding needs one layer's Hessian at a time; materializing all of them at once would
    double the memory of the statistics they come from (for a 7B model, tens of GB).
    """

    def __init__(self, inputs: Mapping[str, LayerInputs]):
        self._inputs = inputs

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._inputs[name].hessian()

    def __iter__(self) -> Iterator[str]:
        return iter(self._inputs)

    def __len__(self) -> int:
        return len(self._inputs)


def collect_hessians(policy: QuantPolicy, batch: Batch,
                     max_bytes: int = DEFAULT_MAX_BYTES) -> LayerHessians:
    """Return {layer: H (K, K)} over ``batch`` (what GPTQ rounding needs), computed lazily.

    The statistics are gathered a group of at most ``max_bytes`` at a time (``StreamedInputs``).
    """
    return LayerHessians(StreamedInputs(policy, batch, max_bytes))
