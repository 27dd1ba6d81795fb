# Copyright 2026 qvla_ros authors. Apache-2.0.
"""qvla-ref: shapes for every config, gradients, checkpoints, normalization and training."""

import dataclasses

import numpy as np
import pytest
import torch

from qvla_ros.core.types import Observation
from qvla_ros.models.checkpoint import load_policy, save_policy
from qvla_ros.models.normalization import ActionNormalizer
from qvla_ros.models.reference import build_reference, CONFIGS


def _obs(size=96, text='push the red block to the left'):
    rng = np.random.default_rng(0)
    return Observation({'front': rng.integers(0, 256, (size, size, 3), dtype=np.uint8)}, text,
                       np.array([0.1, -0.2, 0.15, 0.0], np.float32))


@pytest.mark.parametrize('name', ['tiny', 'small', 'openvla-oft-7b'])
def test_forward_shapes(name):
    config = CONFIGS[name]
    if name == 'openvla-oft-7b':  # every width of the real model, one block deep (1.5 GB)
        config = dataclasses.replace(config, layers=1, vision_layers=1)
    model = build_reference(config)
    batch = model.make_batch(_obs(config.image_size))
    with torch.no_grad():
        out = model.action_tensor(batch)
    assert out.shape == (1, config.chunk_size, config.action_dim)
    assert model.predict(_obs()).actions.shape == (config.chunk_size, config.action_dim)
    n = sum(p.numel() for p in model.parameters())
    if name == 'tiny':
        assert n < 2_000_000
    if name == 'small':
        assert 10_000_000 <= n <= 25_000_000


def test_gradients_flow_and_layers_are_selected():
    model = build_reference(CONFIGS['tiny'])
    out = model.action_tensor(model.make_batch(_obs()))
    out.sum().backward()
    layers = model.quantizable_layers()
    assert layers and all(n.startswith(('vision.', 'language.')) for n in layers)
    assert not any(n.startswith(('projector', 'action_head')) for n in layers)
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0
               for m in layers.values())


def test_instruction_changes_actions():
    model = build_reference(CONFIGS['tiny'])
    a = model.predict(_obs(text='push the red block to the left')).actions
    b = model.predict(_obs(text='put the green block on the blue block')).actions
    assert not np.allclose(a, b)


def test_checkpoint_roundtrip_is_bit_identical(tmp_path):
    norm = ActionNormalizer(np.full(7, -0.03, np.float32), np.full(7, 0.03, np.float32),
                            np.array([True] * 6 + [False]))
    model = build_reference(CONFIGS['tiny'], seed=4, normalizer=norm)
    save_policy(model, tmp_path / 'ck')
    back = load_policy(str(tmp_path / 'ck'))
    np.testing.assert_array_equal(model.predict(_obs()).actions, back.predict(_obs()).actions)
    assert not list(tmp_path.glob('.*'))
    (tmp_path / 'ck' / 'norm_stats.json').write_text('{"other_robot": {"action": {}}}')
    with pytest.raises(ValueError, match=r"available keys: \['other_robot'\]"):
        load_policy(str(tmp_path / 'ck'))
    (tmp_path / 'ck' / 'norm_stats.json').unlink()
    with pytest.raises(ValueError, match='norm_stats.json does not exist; expected the action '
                                         'normalization statistics'):
        load_policy(str(tmp_path / 'ck'))


def test_normalizer_errors_and_gripper_mask():
    with pytest.raises(ValueError, match='no normalization statistics'):
        ActionNormalizer.from_stats({})
    with pytest.raises(ValueError, match='lack action q01/q99'):
        ActionNormalizer.from_stats({'k': {'action': {'q01': [0]}}}, 'k')
    with pytest.raises(ValueError, match='pick one'):
        ActionNormalizer.from_stats({'a': {}, 'b': {}})
    norm = ActionNormalizer(np.zeros(2, np.float32), np.full(2, 2.0, np.float32),
                            np.array([True, False]))
    out = norm.normalize(np.array([[1.0, 5.0]], np.float32))
    np.testing.assert_allclose(out, [[0.0, 5.0]])
    np.testing.assert_allclose(norm.unnormalize(out), [[1.0, 5.0]])


def test_spec_errors():
    with pytest.raises(ValueError, match='unknown qvla-ref config'):
        load_policy('ref-huge')
    with pytest.raises(ValueError, match='integer seed'):
        load_policy('ref-tiny:x')
