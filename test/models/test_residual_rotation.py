# Copyright 2026 qvla_ros authors. Apache-2.0.
"""QuaRot's residual rotation of qvla-ref: the same policy, a rotated stream, loadable."""

import dataclasses

import pytest
import torch

from qvla_ros.models.reference import build_reference, CONFIGS
from qvla_ros.models.residual_rotation import READERS, UnrotatingRMSNorm


def _model(seed=0):
    """Return a two-camera tiny qvla-ref in float64 whose norms have non-unit scales."""
    config = dataclasses.replace(CONFIGS['tiny'], cameras=('agentview', 'wrist'))
    model = build_reference(config, seed=seed).double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.language.named_parameters():
            if 'norm' in name:  # trained norms are not all ones; folding must carry them
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def _batch(config, n=3):
    gen = torch.Generator().manual_seed(1)
    s, t = config.image_size, config.max_text_tokens
    return {'image': torch.rand(n, 2, 3, s, s, generator=gen, dtype=torch.float64),
            'tokens': torch.randint(1, config.vocab, (n, t), generator=gen),
            'mask': (torch.arange(t) < 5).double().expand(n, t).clone(),
            'proprio': torch.randn(n, config.proprio_dim, generator=gen, dtype=torch.float64)}


def _stream(model, batch):
    """Return the residual stream entering the second decoder layer (B, N, D)."""
    seen = {}
    hook = model.language.layers[1].register_forward_pre_hook(
        lambda mod, args: seen.setdefault('h', args[0].detach()))
    with torch.no_grad():
        out = model.action_tensor(batch)
    hook.remove()
    return out, seen['h']


def test_a_rotated_stream_computes_the_same_actions():
    model = _model()
    batch = _batch(model.config)
    before, stream = _stream(model, batch)
    readers = model.rotate_residual_(seed=2)
    after, rotated = _stream(model, batch)
    # the norms compute in float32 (as Llama's); everything else is exact
    assert torch.allclose(after, before, atol=1e-6)
    rot = model.language.norm.rotation
    assert torch.allclose(rotated, rot(stream), atol=1e-6)  # the stream really is R h
    assert not torch.allclose(rotated, stream, atol=1e-2)
    assert readers == {f'language.layers.{i}.{r}' for i in range(model.config.layers)
                       for r in READERS}
    assert all(torch.equal(layer.input_layernorm.weight, torch.ones_like(
        layer.input_layernorm.weight)) for layer in model.language.layers)
    with pytest.raises(ValueError, match='rotated already'):
        model.rotate_residual_(seed=2)


def test_a_rotated_state_loads_into_the_structure_alone():
    model = _model()
    batch = _batch(model.config)
    model.rotate_residual_(seed=4)
    fresh = _model(seed=9)
    readers = fresh.rotate_residual_(seed=0, fold=False)
    assert isinstance(fresh.language.norm, UnrotatingRMSNorm) and len(readers) == 5 * 2
    fresh.load_state_dict(model.state_dict(), strict=True)  # signs travel as a buffer
    with torch.no_grad():
        assert torch.equal(fresh.action_tensor(batch), model.action_tensor(batch))
