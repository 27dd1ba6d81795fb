# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node safety across processes: watchdog, bad input, misconfiguration."""

import time

import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import String

from qvla_ros.ros.launcher import Launch


@pytest.mark.ros
def test_watchdog_stops_motion_and_warns(probe, domain_id):
    launch = Launch('policy', domain_id=domain_id, overrides=['image_timeout:=0.3']).start()
    try:
        probe.turn_on()
        probe.spin(2.0)
        moving = [m for _, m in probe.twists[-5:]]
        assert moving and any(abs(m.twist.linear.x) > 0 for m in moving)
        stop = time.monotonic()
        probe.twists.clear()
        probe.spin(1.5, camera=False)
        late = [m for t, m in probe.twists if t > stop + 0.3 + 0.1 + 0.05]
        assert late, 'no commands after the camera stopped'
        assert all(m.twist.linear.x == m.twist.linear.y == m.twist.linear.z == 0.0
                   for m in late)
        assert probe.wait_status(lambda s: s.state_name == 'WARN' and 'old' in s.last_error, 3), \
            [(s.state_name, s.last_error) for s in probe.status]
        assert launch.poll() is None
    finally:
        launch.stop()


def _bad_frames():
    def img(h, w, enc, step, data):
        m = Image()
        m.height, m.width, m.encoding, m.step, m.data = h, w, enc, step, data
        return m
    return [img(48, 64, '32FC1', 256, bytes(48 * 256)),          # wrong encoding
            img(48, 64, 'rgb8', 100, bytes(48 * 100)),           # step too small
            img(48, 64, 'rgb8', 192, bytes(10)),                 # size mismatch
            img(48, 64, 'rgb8', 192, b''),                       # empty data
            img(2160, 3840, 'rgb8', 11520, bytes(2160 * 11520))]  # a 4K frame


@pytest.mark.ros
def test_bad_input_is_rejected_and_the_node_stays_up(probe, domain_id):
    launch = Launch('policy', domain_id=domain_id,
                    overrides=['max_image_pixels:=1000000']).start()
    try:
        probe.turn_on()
        probe.spin(1.0)
        for frame in _bad_frames():
            probe.spin(0.2, frame=frame)
        for text in ('   ', 'bad\x00text'):
            probe.text.publish(String(data=text))
            probe.spin(0.2)
        assert probe.wait_status(lambda s: 'rejected' in s.last_error, 3)
        assert launch.poll() is None
        probe.text.publish(String(data='push the red block to the left'))
        probe.twists.clear()
        probe.spin(2.0)
        assert len(probe.twists) >= 15, 'the valid stream lost its rate after bad input'
    finally:
        launch.stop()


@pytest.mark.ros
@pytest.mark.parametrize('override,message', [
    ('model:=/nonexistent/checkpoint', 'config.json'),
    ('expected_action_dim:=6', 'expected_action_dim is 6'),
    ('execute_steps:=20', 'exceeds the model chunk size'),
])
def test_misconfiguration_fails_configure_cleanly(probe, domain_id, override, message):
    launch = Launch('policy', domain_id=domain_id, overrides=[override]).start()
    try:
        assert probe.wait_status(lambda s: s.state_name == 'UNCONFIGURED'
                                 and message in s.last_error, 20)
        assert launch.poll() is None, 'the node died instead of staying unconfigured'
    finally:
        launch.stop()


@pytest.mark.ros
def test_mismatched_quantized_checkpoint_fails_configure(probe, domain_id, quantized_toy):
    import json
    ckpt, _ = quantized_toy
    config = json.loads((ckpt / 'config.json').read_text())
    config['quantization_config']['layers']['vision.0']['out_features'] = 63  # wrong plan
    (ckpt / 'config.json').write_text(json.dumps(config))
    launch = Launch('policy', domain_id=domain_id, overrides=[f'model:={ckpt}']).start()
    try:
        assert probe.wait_status(lambda s: s.state_name == 'UNCONFIGURED'
                                 and 'invalid packed layer' in s.last_error, 20), \
            [(s.state_name, s.last_error) for s in probe.status]
        assert launch.poll() is None
    finally:
        launch.stop()


def _damaged_toy(folder, damage):
    import json
    from qvla_ros.models.checkpoint import save_policy
    from qvla_ros.models.toy import build_toy_policy
    save_policy(build_toy_policy(0), folder)
    if damage == 'truncated weights':
        path = folder / 'model.safetensors'
        path.write_bytes(path.read_bytes()[:-100])
        return 'model.safetensors is not a readable safetensors file'
    if damage == 'config value of the wrong type':
        config = json.loads((folder / 'config.json').read_text())
        config['config']['hidden'] = 'wide'
        (folder / 'config.json').write_text(json.dumps(config))
        return "field 'hidden' must be int"
    from safetensors.torch import load_file, save_file
    state = load_file(str(folder / 'model.safetensors'))  # the toy keeps its bounds as buffers
    state['action_low'][0], state['action_high'][0] = 1.0, -1.0
    save_file(state, str(folder / 'model.safetensors'))
    return 'action bounds must be finite with action_low <= action_high'


@pytest.mark.ros
@pytest.mark.parametrize('damage', ['truncated weights', 'config value of the wrong type',
                                    'low bound above high bound'])
def test_a_damaged_checkpoint_fails_configure_with_the_reason(probe, domain_id, tmp_path,
                                                              damage):
    message = _damaged_toy(tmp_path / 'ckpt', damage)
    launch = Launch('policy', domain_id=domain_id, overrides=[f'model:={tmp_path / "ckpt"}'])
    launch.start()
    try:
        assert probe.wait_status(lambda s: s.state_name == 'UNCONFIGURED'
                                 and message in s.last_error
                                 and str(tmp_path / 'ckpt') in s.last_error, 30), \
            sorted({(s.state_name, s.last_error) for s in probe.status})
        assert launch.poll() is None
    finally:
        launch.stop()
