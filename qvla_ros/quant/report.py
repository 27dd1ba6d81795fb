# Copyright 2026 qvla_ros authors. Apache-2.0.
"""PNG plots of a plan: sensitivity distribution per layer type, and bits per layer."""

from pathlib import Path
from typing import List, Optional

import torch

from qvla_ros.quant.artifacts import QuantPlan, SensitivityFile


def layer_type(name: str) -> str:
    """Return a coarse layer type from a module path (the last name component)."""
    return name.rsplit('.', 1)[-1] if not name.rsplit('.', 1)[-1].isdigit() else \
        '.'.join(name.split('.')[-2:])


def write_plots(plan: QuantPlan, sens: Optional[SensitivityFile], out: Path) -> List[Path]:
    """Write bits_per_layer.png (and sensitivity_by_type.png with ``sens``); return paths."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError('plots need matplotlib: pip install "qvla_ros[sim]"') from err
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    names = sorted(plan.bits)
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names)), 4))
    bottom = torch.zeros(len(names))
    for b in sorted(plan.candidates):
        frac = torch.tensor([float((plan.bits[n] == b).float().mean()) for n in names])
        ax.bar(range(len(names)), frac, bottom=bottom, label=f'{b} bits')
        bottom += frac
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel('fraction of rows')
    ax.set_title(f'bits per layer ({plan.achieved_bits():.2f} bits/param)')
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / 'bits_per_layer.png')
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if sens is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        types = sorted({layer_type(n) for n in sens.scores})
        for bi, b in enumerate(sens.bits):
            data = [torch.cat([sens.scores[n][bi] for n in sens.scores if layer_type(n) == t])
                    .clamp(min=1e-30).log10().numpy() for t in types]
            ax.boxplot(data, positions=[i + 0.18 * bi for i in range(len(types))],
                       widths=0.15, showfliers=False)
        ax.set_xticks(range(len(types)), types, rotation=45, fontsize=7)
        ax.set_ylabel('log10 sensitivity (boxes per bit-width: ' +
                      ', '.join(str(b) for b in sens.bits) + ')')
        fig.tight_layout()
        paths.append(out / 'sensitivity_by_type.png')
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
