# Copyright 2026 qvla_ros authors. Apache-2.0.
"""What an upstream OpenVLA / OFT folder means: its config as saved, and deployment options.

``save_pretrained`` writes only the fields that differ from the class defaults, so a Hub
``config.json`` holds a ``text_config`` of about four keys; every missing field takes the
default of the class that wrote it (transformers' ``LlamaConfig``, upstream's
``OpenVLAConfig``), which is what upstream runs with. Some facts are not in the files at all:
OFT's chunk length, bounds type and number of images are constants of the robot platform
(``prismatic/vla/constants.py``, chosen there from the command line), so here they come from
:class:`UpstreamOptions`, whose unset fields are filled from the platform named by the norm
stats key (``libero_*`` -> LIBERO, ``aloha*`` -> ALOHA, ``bridge*`` -> Bridge).
"""

from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Optional

# upstream prismatic/extern/hf/configuration_prismatic.py: vision_backbone_id -> timm ids
VISION_BACKBONES = {
    'dinov2-vit-l': (['vit_large_patch14_reg4_dinov2.lvd142m'], [224]),
    'siglip-vit-so400m': (['vit_so400m_patch14_siglip_224'], [224]),
    'siglip-vit-so400m-384px': (['vit_so400m_patch14_siglip_384'], [384]),
    'dinosiglip-vit-so-224px': (['vit_large_patch14_reg4_dinov2.lvd142m',
                                 'vit_so400m_patch14_siglip_224'], [224, 224]),
    'dinosiglip-vit-so-384px': (['vit_large_patch14_reg4_dinov2.lvd142m',
                                 'vit_so400m_patch14_siglip_384'], [384, 384]),
}
# upstream OpenVLAConfig defaults (fields save_pretrained leaves out when equal)
TOP_DEFAULTS = {'vision_backbone_id': 'siglip-vit-so400m', 'n_action_bins': 256,
                'pad_to_multiple_of': 64, 'pad_token_id': 32000}
# upstream prismatic/vla/constants.py
PLATFORMS = {
    'libero': {'chunk_size': 8, 'normalization': 'bounds_q99', 'num_images': 2},
    'aloha': {'chunk_size': 25, 'normalization': 'bounds', 'num_images': 3},
    'bridge': {'chunk_size': 5, 'normalization': 'bounds_q99', 'num_images': 1},
}
ATTENTION = ('causal', 'bidirectional')
LLAMA_FIELDS = ('vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
                'num_attention_heads', 'num_key_value_heads', 'rms_norm_eps',
                'max_position_embeddings', 'hidden_act', 'attention_bias', 'mlp_bias',
                'tie_word_embeddings', 'rope_theta')


@dataclass(frozen=True)
class UpstreamOptions:
    """How to run an upstream folder where its files do not say; None: from the folder.

    ``attention`` None runs OFT checkpoints (an action head is present) with bidirectional
    attention, as the transformers fork OFT was trained with, and OpenVLA causally.
    ``center_crop`` applies the 90 %-area centre crop of OFT's LIBERO evaluation.
    """

    unnorm_key: Optional[str] = None
    chunk_size: Optional[int] = None
    normalization: Optional[str] = None
    num_images: Optional[int] = None
    attention: Optional[str] = None
    center_crop: bool = False

    def __post_init__(self):
        if self.chunk_size is not None and not 1 <= self.chunk_size <= 256:
            raise ValueError(f'chunk_size must be in 1..256, got {self.chunk_size}')
        if self.normalization not in (None, 'bounds_q99', 'bounds'):
            raise ValueError(f"normalization must be 'bounds_q99' or 'bounds', got "
                             f'{self.normalization!r}')
        if self.num_images is not None and not 1 <= self.num_images <= 3:
            raise ValueError(f'num_images must be 1, 2 or 3, got {self.num_images}')
        if self.attention not in (None,) + ATTENTION:
            raise ValueError(f'attention must be one of {ATTENTION}, got {self.attention!r}')

    @classmethod
    def parse(cls, text: str) -> 'UpstreamOptions':
        """Parse ``name=value,...`` (e.g. ``unnorm_key=libero_spatial,chunk_size=8``)."""
        names = {f.name: f for f in fields(cls)}
        values: Dict[str, Any] = {}
        for item in filter(None, (t.strip() for t in (text or '').split(','))):
            name, sep, value = item.partition('=')
            if not sep or name not in names:
                raise ValueError(f'expected upstream options name=value with names '
                                 f'{sorted(names)}, got {item!r}')
            values[name] = _convert(name, value.strip())
        return cls(**values)

    def resolve(self, key: str, oft: bool) -> 'UpstreamOptions':
        """Return the options with every unset field filled for norm stats ``key``."""
        if not oft:
            return replace(self, chunk_size=self.chunk_size or 1,
                           normalization=self.normalization or 'bounds_q99',
                           num_images=self.num_images or 1,
                           attention=self.attention or 'causal')
        platform = next((p for p in PLATFORMS if p in key.lower()), None)
        unset = [n for n in ('chunk_size', 'normalization', 'num_images')
                 if getattr(self, n) is None]
        if unset and platform is None:
            raise ValueError(f'norm stats key {key!r} names no robot platform known to OFT '
                             f'({sorted(PLATFORMS)}); give {", ".join(unset)} as upstream '
                             'options')
        filled = {n: PLATFORMS[platform][n] for n in unset}
        return replace(self, attention=self.attention or 'bidirectional', **filled)


def _convert(name: str, value: str):
    if name in ('chunk_size', 'num_images'):
        if not value.isdigit():
            raise ValueError(f'upstream option {name} must be a whole number, got {value!r}')
        return int(value)
    if name == 'center_crop':
        if value.lower() not in ('true', 'false', '1', '0'):
            raise ValueError(f'upstream option center_crop must be true or false, got '
                             f'{value!r}')
        return value.lower() in ('true', '1')
    return value


def filled_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Return an upstream config.json with every field upstream would default filled in.

    ``text_config`` gets transformers' LlamaConfig defaults, ``timm_model_ids`` and
    ``image_sizes`` come from ``vision_backbone_id`` when absent.
    """
    from transformers import LlamaConfig
    out = {**TOP_DEFAULTS, **cfg}
    text = dict(out.get('text_config') or {})
    text.pop('model_type', None)
    rope = text.pop('rope_theta', None)
    llama = LlamaConfig(**{k: v for k, v in text.items() if k in LLAMA_FIELDS}).to_dict()
    theta = rope or (llama.get('rope_parameters') or {}).get('rope_theta') or \
        llama.get('rope_theta') or 10000.0
    out['text_config'] = {**{k: llama[k] for k in LLAMA_FIELDS if k in llama},
                          'rope_theta': float(theta)}
    if 'timm_model_ids' not in out or 'image_sizes' not in out:
        backbone = out['vision_backbone_id']
        if backbone not in VISION_BACKBONES:
            raise ValueError(f'config.json names vision_backbone_id {backbone!r} without '
                             f'timm_model_ids; expected one of {sorted(VISION_BACKBONES)}')
        ids, sizes = VISION_BACKBONES[backbone]
        out.setdefault('timm_model_ids', ids)
        out.setdefault('image_sizes', sizes)
    out.setdefault('timm_override_act_layers', [None] * len(out['timm_model_ids']))
    out.setdefault('use_fused_vision_backbone', len(out['timm_model_ids']) == 2)
    return out
