# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Training settings and the named recipes ``qvla train --recipe`` reads its defaults from.

The defaults of :class:`TrainConfig` are the settings every shipped reference policy was
trained with; a recipe changes only what its stage needs. ``scripts/reference.sh`` names a
recipe per stage and passes nothing else but the stage's data, steps and seed.
"""

from dataclasses import dataclass, fields, replace
from typing import Dict

from qvla_ros.models.warm_start import WIDEN_INITS

# Loss on normalized chunks. 'l1' is OFT's; from scratch a small qvla-ref trained with it
# collapsed to constant xyz (docs/history.md), while 'mse' keeps the gradient proportional to
# the error. Validation always reports L1.
LOSS_NAMES = ('l1', 'mse')
POS_INITS = ('random', 'sincos')


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of ``qvla train``.

    crop_scale: random-crop area fraction (1.0 = no crop; a fixed camera needs none).
    aux_weight: weight of the colour-localization loss (``aux_targets``; 0 = off).
    pos_init: 'sincos' fixes the vision position embeddings' start (from scratch only).
    init: float checkpoint folder to warm-start from ('' = from scratch).
    widen_init: weights of the proprio inputs a warm start adds (WIDEN_INITS).
    bf16: autocast to bf16 where the CPU has native bf16 units (else float32 is faster).
    """

    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    val_every: int = 500
    save_every: int = 250
    val_fraction: float = 0.1
    crop_scale: float = 1.0
    jitter: float = 0.1
    bf16: bool = True
    seed: int = 0
    loss: str = 'mse'
    aux_weight: float = 0.0
    aux_counterfactual: int = 16
    pos_init: str = 'random'
    init: str = ''
    widen_init: str = 'zero'

    def __post_init__(self):
        if self.loss not in LOSS_NAMES:
            raise ValueError(f'loss must be one of {LOSS_NAMES}, got {self.loss!r}')
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f'invalid TrainConfig: {self}')
        if self.pos_init not in POS_INITS:
            raise ValueError(f'pos_init must be one of {POS_INITS}, got {self.pos_init!r}')
        if self.aux_counterfactual < 0:
            raise ValueError(f'aux_counterfactual must be >= 0, got {self.aux_counterfactual}')
        if self.aux_weight < 0 or (self.aux_weight > 0 and self.crop_scale != 1.0):
            raise ValueError('aux_weight must be >= 0, and > 0 needs crop_scale 1.0 (the '
                             f'localization targets assume full frames); got {self.aux_weight}'
                             f' with crop_scale {self.crop_scale}')
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in [0, 1), got {self.val_fraction}')
        if self.widen_init not in WIDEN_INITS:
            raise ValueError(f'widen_init must be one of {WIDEN_INITS}, got '
                             f'{self.widen_init!r}')
        if self.init and self.pos_init != 'random':
            raise ValueError(f'pos_init {self.pos_init!r} initialises from scratch; a warm '
                             f'start from {self.init!r} keeps its position embeddings')


_BASE = TrainConfig()
# name -> (settings, one line on when to use it). Warm-start recipes leave pos_init random.
RECIPES: Dict[str, tuple] = {
    'default': (_BASE, 'the shared defaults (from scratch, no auxiliary loss)'),
    'tabletop': (replace(_BASE, steps=4000, pos_init='sincos', aux_weight=1.0),
                 'tabletop from scratch: sincos positions, colour-localization loss'),
    'tabletop-finetune': (replace(_BASE, lr=1.5e-4, aux_weight=1.0),
                          'tabletop warm start (--init): more data or added cameras'),
    'metaworld': (replace(_BASE, steps=4000, pos_init='sincos'),
                  'Meta-World from scratch: sincos positions'),
    'metaworld-finetune': (replace(_BASE, steps=2500, lr=1.5e-4),
                           'Meta-World warm start (--init): more data, goal input or cameras'),
}


def recipe(name: str, **overrides) -> TrainConfig:
    """Return recipe ``name`` with the fields given (not None) replaced."""
    if name not in RECIPES:
        raise ValueError(f'unknown recipe {name!r}; expected one of {sorted(RECIPES)}')
    names = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f'unknown TrainConfig fields {sorted(unknown)}')
    return replace(RECIPES[name][0], **{k: v for k, v in overrides.items() if v is not None})


def describe(name: str) -> str:
    """Return one line naming the recipe, its use and where it differs from 'default'."""
    cfg, use = RECIPES[name]
    diff = ', '.join(f'{f.name}={getattr(cfg, f.name)}' for f in fields(TrainConfig)
                     if getattr(cfg, f.name) != getattr(_BASE, f.name))
    return f'{name}: {use}' + (f' ({diff})' if diff else '')
