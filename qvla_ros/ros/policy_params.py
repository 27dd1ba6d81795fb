# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Parameters of policy_node: declared once with descriptors, validated, read into a config.

Defaults live in config/policy.yaml; this table is their single declaration. Read-only
parameters are fixed at start; the others are checked by an on-set callback.
"""

from dataclasses import dataclass
from typing import List, Tuple

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from qvla_ros.runtime.chunking import AGGREGATORS, MODES, ScheduleSpec
from qvla_ros.runtime.safety import ActionLimits

# name: (default, description, read_only, (min, max) or None)
PARAMETERS = {
    'model': ('toy', "'toy' (random-init tiny model) or a checkpoint folder, FP or packed",
              True, None),
    'seed': (0, 'seed of the random-init toy model', True, (0, 2**31 - 1)),
    'upstream': ('', 'upstream OpenVLA / OFT folders: name=value,... options (unnorm_key, '
                     'chunk_size, normalization, num_images, attention, center_crop)', True,
                 None),
    'autostart': (True, 'configure and activate at start (no lifecycle manager needed)', True,
                  None),
    'discovery_wait': (1.0, 'autostart: seconds to look for another node of the same name on '
                            'the graph before activating', True, (0.0, 10.0)),
    'executor_threads': (1, 'executor threads for callbacks (the model always runs on a '
                         'thread of its own)', True, (1, 16)),
    'control_hz': (10.0, 'rate of the control loop and of published commands', True,
                   (0.5, 200.0)),
    'cameras': ([], 'camera names, in the order an unnamed-camera model takes them; subscribed '
                    'on ~/image/<name> (raw) and ~/image/<name>/compressed. Empty: the '
                    "model's own names, or ~/image for one unnamed camera", True, None),
    'max_sync_skew': (0.05, 'seconds: the most the capture stamps of the frames that form one '
                            'observation may differ', True, (0.0, 1.0)),
    'schedule': ('', f'action schedule, one of {MODES} (empty: as the checkpoint records)',
                 True, None),
    'execute_steps': (0, 'replan: actions executed from each chunk before replanning (0: as '
                         'the checkpoint records)', True, (0, 256)),
    'aggregator': ('exp', f'ensemble: how chunks are combined, one of {AGGREGATORS}', True,
                   None),
    'ensemble_decay': (0.1, 'ensemble exp aggregator: weight decay per step of age', True,
                       (0.0, 10.0)),
    'expected_action_dim': (0, 'fail configure unless the model predicts this many dims '
                               '(0: any)', True, (0, 64)),
    'expected_chunk_size': (0, 'fail configure unless the model predicts this horizon '
                               '(0: any)', True, (0, 256)),
    'action_low': ([0.0], 'per-dimension lower clamp (empty list or [0.0] with action_high '
                          '[0.0]: no clamp)', True, None),
    'action_high': ([0.0], 'per-dimension upper clamp', True, None),
    'image_timeout': (0.5, 'seconds without a camera frame before commands stop', False,
                      (0.01, 10.0)),
    'require_proprio': (False, 'wait for ~/proprio (JointState positions) before acting, and '
                               'treat it like a camera frame for image_timeout', True, None),
    'max_image_pixels': (2048 * 2048, 'larger frames are rejected', False, (1, 2**26)),
    'frame_id': ('base_link', 'frame_id stamped on published commands', False, None),
}


def _descriptor(name, description, read_only, bounds, default) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if bounds and isinstance(default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]),
                                                        to_value=float(bounds[1]))]
    elif bounds and isinstance(default, int) and not isinstance(default, bool):
        desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]))]
    return desc


def declare(node) -> None:
    """Declare every parameter on ``node`` and install the on-set validator."""
    for name, (default, description, read_only, bounds) in PARAMETERS.items():
        desc = _descriptor(name, description, read_only, bounds, default)
        if default == []:  # an empty list has no type of its own: a string array
            desc.type = ParameterType.PARAMETER_STRING_ARRAY
            node.declare_parameter(name, Parameter.Type.STRING_ARRAY, desc)
        else:
            node.declare_parameter(name, default, desc)
    node.add_on_set_parameters_callback(validate)


def validate(params: List) -> SetParametersResult:
    """Reject values that the descriptors cannot express."""
    for p in params:
        if p.name == 'frame_id' and not str(p.value).strip():
            return SetParametersResult(successful=False, reason='frame_id must not be empty')
    return SetParametersResult(successful=True)


@dataclass(frozen=True)
class NodeConfig:
    """The read-only parameters, checked for consistency."""

    model: str
    seed: int
    control_hz: float
    schedule_mode: str        # '' : the checkpoint's
    execute_steps: int        # 0: the checkpoint's
    aggregator: str
    decay: float
    limits: ActionLimits
    expected_action_dim: int
    expected_chunk_size: int
    cameras: Tuple[str, ...] = ()
    max_sync_skew: float = 0.05

    def __post_init__(self):
        if self.schedule_mode:  # the other fields are checked once merged with the model's
            ScheduleSpec(self.schedule_mode, aggregator=self.aggregator, decay=self.decay)

    def check_model(self, meta: dict, schedule: ScheduleSpec) -> None:
        """Raise ValueError naming the first parameter that contradicts the model."""
        if self.expected_action_dim and meta['action_dim'] != self.expected_action_dim:
            raise ValueError(f'model predicts {meta["action_dim"]} action dims, '
                             f'expected_action_dim is {self.expected_action_dim}')
        if self.expected_chunk_size and meta['chunk_size'] != self.expected_chunk_size:
            raise ValueError(f'model predicts chunks of {meta["chunk_size"]}, '
                             f'expected_chunk_size is {self.expected_chunk_size}')
        if schedule.execute_steps > meta['chunk_size']:
            raise ValueError(f'execute_steps {schedule.execute_steps} exceeds the '
                             f'model chunk size {meta["chunk_size"]}')
        self.limits.check_dim(meta['action_dim'])


def read_config(node) -> NodeConfig:
    """Return the NodeConfig of ``node``'s parameters (ValueError if inconsistent)."""
    def get(name):
        try:
            return node.get_parameter(name).value
        except ParameterUninitializedException:  # a string array declared empty
            return PARAMETERS[name][0]
    low, high = list(get('action_low')), list(get('action_high'))
    if low == [0.0] and high == [0.0]:
        low, high = [], []
    return NodeConfig(get('model'), get('seed'), get('control_hz'), get('schedule'),
                      get('execute_steps'), get('aggregator'), get('ensemble_decay'),
                      ActionLimits(tuple(low), tuple(high)), get('expected_action_dim'),
                      get('expected_chunk_size'), tuple(get('cameras') or ()),
                      get('max_sync_skew'))
