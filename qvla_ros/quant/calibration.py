# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Forward-hook collectors of per-layer input statistics over calibration batches."""

from dataclasses import dataclass
from typing import Dict, Iterator, Mapping

import torch

from qvla_ros.quant.policy import Batch, QuantPolicy, split_batch


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


def collect_inputs(policy: QuantPolicy, batch: Batch, max_rows: int = 2048,
                   samples_per_pass: int = 32, seed: int = 0) -> Dict[str, LayerInputs]:
    """Run the calibration batch once with hooks on every quantizable layer.

    Token rows of each layer input are flattened to (rows, K); ``max_rows`` of them are kept
    (uniformly at random) for output-error searches, while absmax and X^T X see every row.
    """
    layers = policy.quantizable_layers()
    rows: Dict[str, list] = {k: [] for k in layers}
    stats: Dict[str, list] = {}

    def make_hook(name):
        def hook(mod, args, out):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # (T, K)
            rows[name].append(x.float())
            if name not in stats:
                stats[name] = [x.abs().amax(0), x.T @ x, x.shape[0]]
            else:
                s = stats[name]
                s[0] = torch.maximum(s[0], x.abs().amax(0))
                s[1] += x.T @ x
                s[2] += x.shape[0]
        return hook
    handles = [m.register_forward_hook(make_hook(k)) for k, m in layers.items()]
    try:
        with torch.no_grad():
            for part in split_batch(batch, samples_per_pass):
                policy.action_tensor(part)
    finally:
        for h in handles:
            h.remove()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, parts in rows.items():
        if name not in stats:
            raise ValueError(f'layer {name} was never called by action_tensor')
        x = torch.cat(parts)
        if x.shape[0] > max_rows:
            x = x[torch.randperm(x.shape[0], generator=gen)[:max_rows]]
        absmax, xtx, count = stats[name]
        out[name] = LayerInputs(x, absmax.float(), xtx, count)
    return out


class LayerHessians(Mapping):
    """{layer: H = 2/n X^T X (K, K)}, each computed when it is read and not kept.

    GPTQ rounding needs one layer's Hessian at a time; materializing all of them at once would
    double the memory that ``collect_inputs`` already holds (for a 7B model, tens of GB).
    """

    def __init__(self, inputs: Mapping[str, LayerInputs]):
        self._inputs = inputs

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._inputs[name].hessian()

    def __iter__(self) -> Iterator[str]:
        return iter(self._inputs)

    def __len__(self) -> int:
        return len(self._inputs)


def collect_hessians(policy: QuantPolicy, batch: Batch) -> LayerHessians:
    """Return {layer: H (K, K)} over ``batch`` (what GPTQ rounding needs), computed lazily."""
    return LayerHessians(collect_inputs(policy, batch))
