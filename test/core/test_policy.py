# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Every model implements the Policy protocol, and its metadata carries the keys nodes read."""

import numpy as np

from qvla_ros.core.policy import METADATA_KEYS, Policy, QuantPolicy
from qvla_ros.core.types import ActionChunk, Observation
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.models.reference import build_reference, CONFIGS
from qvla_ros.models.toy import build_toy_policy


def test_every_model_is_a_policy_and_predicts_named_chunks(up, tmp_path):
    up.write_upstream(tmp_path / 'oft', oft=True)
    models = [build_toy_policy(0), build_reference(CONFIGS['tiny'], seed=0),
              load_policy(str(tmp_path / 'oft'))]
    for model in models:
        assert isinstance(model, Policy) and isinstance(model, QuantPolicy)
        meta = model.metadata()
        assert set(METADATA_KEYS) <= set(meta), type(model).__name__
        size = meta['image_size']
        names = meta['cameras'] or [f'cam{i}' for i in range(meta['num_images'])]
        images = {c: np.zeros((size, size, 3), np.uint8) for c in names}
        chunk = model.predict(Observation(images, 'pick up the red block',
                                          np.zeros(meta['proprio_dim'], np.float32)))
        assert isinstance(chunk, ActionChunk)
        assert chunk.actions.shape == (meta['chunk_size'], meta['action_dim'])
        assert list(chunk.dimension_names) == list(meta['dimension_names'])


def test_an_object_without_predict_is_not_a_policy():
    class OnlyQuant:
        def action_tensor(self, batch):
            return batch

        def quantizable_layers(self):
            return {}
    assert isinstance(OnlyQuant(), QuantPolicy) and not isinstance(OnlyQuant(), Policy)
