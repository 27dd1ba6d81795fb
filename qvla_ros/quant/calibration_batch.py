# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The calibration batch of a policy: steps of a rollout dataset, or synthetic observations.

Every camera of the dataset goes into each observation, in the dataset's order; synthetic
observations give a model the cameras and proprio values its metadata asks for.
"""

import numpy as np

from qvla_ros.core.types import Observation
from qvla_ros.data.rollouts import read_info, spread_steps
from qvla_ros.quant.policy import collate

SYNTHETIC_INSTRUCTIONS = ('push the red block to the left', 'put the green block on the blue '
                          'one', 'pick up the blue block', 'push the green block to the front')


MAX_SAMPLES = 64  # calibration steps, spread evenly over the dataset
STRIDE = 5  # take every k-th step


def calibration_batch(policy, dataset, synthetic: int, max_samples: int = MAX_SAMPLES,
                      stride: int = STRIDE, seed=0):
    """Return a collated calibration batch from a rollout dataset or synthetic observations."""
    batches = []
    if dataset:
        recorded = read_info(dataset).cameras
        for entry, i, data in spread_steps(dataset, max_samples, stride):
            obs = Observation({c: data[f'image.{c}'][i] for c in recorded}, entry['instruction'],
                              data['proprio'][i])
            batches.append(policy.make_batch(obs))
    else:
        rng = np.random.default_rng(seed)
        meta = policy.metadata()
        cams = meta.get('cameras') or [f'camera{k}' for k in range(meta.get('num_images', 1))]
        for i in range(synthetic):
            images = {c: rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for c in cams}
            obs = Observation(images, SYNTHETIC_INSTRUCTIONS[i % 4],
                              rng.standard_normal(meta.get('proprio_dim', 8)).astype(np.float32))
            batches.append(policy.make_batch(obs))
    return getattr(policy, 'collate', collate)(batches)
