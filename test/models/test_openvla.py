# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Hub-layout OpenVLA / OFT folders load as they are and predict as upstream would.

Each folder is written as upstream leaves it (see upstream_folders.py) and the loaded policy
is compared with a plain-torch forward of the same tensors written from upstream's
semantics. Each semantic also has a test that the opposite choice would fail.
"""

import json

import numpy as np
import pytest
import torch

from qvla_ros.core.types import Observation
from qvla_ros.models.checkpoint import CheckpointError, load_policy
from qvla_ros.models.openvla_config import UpstreamOptions
from qvla_ros.models.openvla_loader import load_openvla

KEY = 'libero_spatial_no_noops'


def _obs(up, seed, cameras=2, text='push the red block to the left', proprio=None):
    rng = np.random.default_rng(seed)
    images = {name: rng.integers(0, 256, (up.IMG, up.IMG, 3), dtype=np.uint8)
              for name in ('agentview', 'wrist', 'left_wrist')[:cameras]}
    p = rng.uniform(-1, 1, 8).astype(np.float32) if proprio is None else proprio
    return Observation(images, text, p)


def _stats(folder, key=KEY):
    return json.loads((folder / 'dataset_statistics.json').read_text())[key]


def _oft_reference(up, folder, state, parts, obs, chunk=8, low='q01', high='q99', key=KEY):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(folder))
    stats = _stats(folder, key)
    prop = up.normalize_proprio(obs.proprio, stats['proprio'], low, high).astype(np.float32)
    with torch.no_grad():
        normed = up.ref_oft(state, parts, list(obs.images.values()),
                            up.ref_prompt_ids(tok, obs.instruction), prop, chunk)
    return normed, up.unnorm_oft(normed, stats['action'], low, high)


@pytest.mark.parametrize('seed', [0, 1])
def test_a_hub_oft_folder_predicts_as_upstream(up, tmp_path, seed):
    folder = tmp_path / 'oft'
    state, parts = up.write_upstream(folder, oft=True, seed=seed, head_scale=1.5)
    policy = load_policy(str(folder))  # no options: LIBERO from the stats key
    c = policy.config
    assert (c.variant, c.chunk_size, c.num_images, c.attention, c.normalization) == \
        ('l1', 8, 2, 'bidirectional', 'bounds_q99')
    assert c.llm['rms_norm_eps'] == 1e-6 and c.llm['rope_theta'] == 10000.0  # defaults filled
    obs = _obs(up, seed)
    normed, expected = _oft_reference(up, folder, state, parts, obs)
    assert np.abs(normed).max() > 1.2, 'the head should leave [-1, 1]: unclipped by upstream'
    got = policy.predict(obs).actions
    assert got.shape == (8, 7)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
    swapped = Observation(dict(reversed(list(obs.images.items()))), obs.instruction,
                          obs.proprio)
    assert not np.allclose(policy.predict(swapped).actions, got), 'camera order must matter'


def test_oft_attention_is_bidirectional_and_openvla_causal(up, tmp_path):
    up.write_upstream(tmp_path / 'oft', oft=True)
    up.write_upstream(tmp_path / 'vla', oft=False)
    for name, later_changes_earlier in (('oft', True), ('vla', False)):
        policy = load_policy(str(tmp_path / name))
        tokens = torch.tensor([[1, 3, 4, 5, 6, 7, 8]])
        mask = torch.ones_like(tokens, dtype=torch.float32)
        patches = torch.zeros(1, 2, up.D)
        with torch.no_grad():
            a = policy._run(patches, tokens, mask)
            b = policy._run(patches, torch.cat([tokens[:, :-1], tokens[:, -1:] + 5], 1), mask)
        changed = not torch.allclose(a[:, :-1], b[:, :-1])
        assert changed == later_changes_earlier, name
    causal = load_policy(str(tmp_path / 'oft'), 'attention=causal')
    assert causal.config.attention == 'causal'  # the explicit override wins


def test_a_hub_openvla_folder_decodes_as_upstream(up, tmp_path):
    folder = tmp_path / 'openvla'
    state, _ = up.write_upstream(folder, oft=False, seed=3, key='bridge_orig')
    (folder / 'dataset_statistics.json').unlink()  # openvla-7b keeps its stats in config.json
    policy = load_policy(str(folder), 'unnorm_key=bridge_orig')
    assert policy.config.variant == 'discrete' and policy.metadata()['chunk_size'] == 1
    obs = _obs(up, 3, cameras=1, text='pick up the cup')
    ids = up.ref_prompt_ids(policy.tokenizer, obs.instruction)
    with torch.no_grad():
        normed, tokens = up.ref_discrete(state, obs.images['agentview'], ids)
    assert (tokens >= up.VOCAB - up.PAD - 255).sum() >= 4, 'the model should emit action tokens'
    stats = json.loads((folder / 'config.json').read_text())['norm_stats']['bridge_orig']
    np.testing.assert_allclose(policy.predict(obs).actions,
                               up.unnorm_openvla(normed, stats['action']), atol=1e-6)
    batch = policy.make_batch(obs)  # the differentiable surrogate has gradients
    out = policy.action_tensor(batch)
    assert out.shape == (1, 1, 7) and out.abs().max() <= 1
    out.sum().backward()
    assert any(m.weight.grad is not None and m.weight.grad.abs().sum() > 0
               for m in policy.quantizable_layers().values())


def test_film_conditions_the_towers_on_the_prompt(up, tmp_path):
    folder = tmp_path / 'film'
    state, parts = up.write_upstream(folder, oft=True, seed=4, film=True)
    policy = load_policy(str(folder))
    assert policy.config.film
    obs = _obs(up, 4)
    _, expected = _oft_reference(up, folder, state, parts, obs)
    np.testing.assert_allclose(policy.predict(obs).actions, expected, atol=2e-5, rtol=1e-4)
    without = {k: v for k, v in parts.items() if k != 'film'}
    _, plain = _oft_reference(up, folder, state, without, obs)
    assert np.abs(plain - expected).max() > 1e-3, 'the FiLM file must change the actions'


def test_aloha_uses_min_max_bounds_and_its_chunk(up, tmp_path):
    folder = tmp_path / 'aloha'
    state, parts = up.write_upstream(folder, oft=True, seed=5, key='aloha_fold_shirt')
    policy = load_policy(str(folder), 'num_images=2')  # ALOHA's 3 cameras; 2 given here
    c = policy.config
    assert (c.chunk_size, c.normalization, c.num_images) == (25, 'bounds', 2)
    obs = _obs(up, 5)
    _, expected = _oft_reference(up, folder, state, parts, obs, chunk=25, low='min',
                                 high='max', key='aloha_fold_shirt')
    np.testing.assert_allclose(policy.predict(obs).actions, expected, atol=2e-5, rtol=1e-4)


def test_proprio_is_clipped_after_the_mask_and_chunk_length_is_an_option(up, tmp_path):
    folder = tmp_path / 'oft'
    state, parts = up.write_upstream(folder, oft=True, seed=6)
    policy = load_policy(str(folder), 'chunk_size=5')
    assert policy.config.chunk_size == 5
    far = np.array([0.3, -0.2, 0.1, 0.0, 0.5, -0.5, 0.2, 7.0], np.float32)  # last dim masked
    batch = policy.make_batch(_obs(up, 6, proprio=far))
    assert batch['proprio'][0, -1] == 1.0  # clipped although the mask leaves it raw
    _, expected = _oft_reference(up, folder, state, parts, _obs(up, 6, proprio=far), chunk=5)
    np.testing.assert_allclose(policy.predict(_obs(up, 6, proprio=far)).actions, expected,
                               atol=2e-5, rtol=1e-4)


def test_mismatched_inputs_are_errors_never_silent(up, tmp_path):
    folder = tmp_path / 'oft'
    up.write_upstream(folder, oft=True)
    policy = load_policy(str(folder))
    with pytest.raises(ValueError, match=r'takes 2 camera image\(s\).*got 1'):
        policy.predict(_obs(up, 0, cameras=1))
    with pytest.raises(ValueError, match='takes 8 proprio values, got 3'):
        policy.predict(_obs(up, 0, proprio=np.zeros(3, np.float32)))


def test_options_and_folder_errors_name_what_was_expected(up, tmp_path):
    folder = tmp_path / 'oft'
    up.write_upstream(folder, oft=True, key='my_robot')
    with pytest.raises(CheckpointError, match="'my_robot' names no robot platform.*chunk_size"):
        load_policy(str(folder))
    assert load_policy(str(folder), 'chunk_size=4,num_images=2,normalization=bounds_q99'
                       ).config.chunk_size == 4
    with pytest.raises(ValueError, match='expected upstream options name=value'):
        UpstreamOptions.parse('chunks=4')
    with pytest.raises(CheckpointError, match="unnorm_key 'nope' is not in the norm stats"):
        load_policy(str(folder), 'unnorm_key=nope,chunk_size=4,num_images=2')
    (folder / 'noisy_action_projector--150000_checkpoint.pt').write_bytes(b'')
    with pytest.raises(CheckpointError, match='noisy_action_projector--150000_checkpoint.pt: '
                                              'a weight file this loader does not know'):
        load_policy(str(folder), 'chunk_size=4,num_images=2')


def test_the_layers_that_quantize(up, tmp_path):
    up.write_upstream(tmp_path / 'oft', oft=True)
    layers = load_openvla(tmp_path / 'oft').quantizable_layers()
    assert any(k.startswith('vision.0.') for k in layers)
    assert any(k.startswith('language.') for k in layers)
    assert not any(k.startswith(('projector', 'action_head', 'lm_head', 'film'))
                   for k in layers)
