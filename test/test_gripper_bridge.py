"""interbotix_gripper_bridge: the conversion, its errors, and the node on DDS (forward_position mode:
interbotix_xs_msgs is not installable here, so the JointSingleCommand modes are checked up to the
import, which must fail with the reason)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time

import pytest

from magma_ros.interface import GRIPPER
from magma_ros.ros.gripper_bridge import BridgeError, BridgeSettings, gripper_output


def test_pwm_mode_opens_at_or_above_the_threshold():
    settings = BridgeSettings(mode="pwm", threshold=0.5, pwm=300.0)
    assert [gripper_output(v, settings) for v in (1.0, 0.5, 0.49, 0.0)] == [300.0, 300.0, -300.0, -300.0]


@pytest.mark.parametrize("mode", ["position", "forward_position"])
def test_position_modes_interpolate(mode):
    settings = BridgeSettings(mode=mode, open_position=0.04, closed_position=0.01)
    assert [gripper_output(v, settings) for v in (1.0, 0.5, 0.0)] == pytest.approx([0.04, 0.025, 0.01])


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1, 1.5])
def test_commands_outside_zero_one_are_rejected(value):
    with pytest.raises(ValueError, match=r"gripper command must be a finite number in \[0, 1\]"):
        gripper_output(value, BridgeSettings())


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "effort"}, "mode: must be one of pwm, position, forward_position"),
    ({"threshold": 2.0}, r"threshold: must be in \[0, 1\]"),
    ({"pwm": 0.0}, r"pwm: must be in \(0, 885\]"),
    ({"open_position": math.nan}, "must be finite"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(BridgeError, match=message):
        BridgeSettings(**kwargs)


def test_interbotix_modes_without_the_message_package_exit_2_with_the_reason(console_script):
    try:
        import interbotix_xs_msgs  # noqa: F401 - only whether the message package is installed
    except ImportError:
        pass
    else:
        pytest.skip("interbotix_xs_msgs is installed: this checks the error without it")
    result = subprocess.run([console_script("interbotix_gripper_bridge"), "--ros-args", "-p", "mode:=pwm"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "mode pwm needs the interbotix_xs_msgs message package" in result.stderr


def test_bad_parameter_exits_2(console_script):
    result = subprocess.run([console_script("interbotix_gripper_bridge"), "--ros-args", "-p", "mode:=forward_position",
                             "-p", "threshold:=3.0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "threshold: must be in [0, 1]" in result.stderr, result.stderr


def test_help_lists_the_parameters(console_script):
    result = subprocess.run([console_script("interbotix_gripper_bridge"), "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: interbotix_gripper_bridge")
    for name in ("mode", "input_topic", "output_topic", "joint_name", "threshold", "pwm", "open_position",
                 "closed_position"):
        assert f"\n  {name} (" in result.stdout, name


def test_forward_position_bridge_in_a_namespace(console_script, tmp_path):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import Float64, Float64MultiArray

    log = open(tmp_path / "bridge.log", "w")
    proc = subprocess.Popen([console_script("interbotix_gripper_bridge"), "--ros-args", "-r", "__ns:=/wx_test",
                             "-p", "mode:=forward_position", "-p", "open_position:=0.037",
                             "-p", "closed_position:=0.015"],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bridge_probe", context=context)
    received: list[list[float]] = []
    node.create_subscription(Float64MultiArray, "/wx_test/gripper_controller/commands",
                             lambda m: received.append(list(m.data)), 10)
    pub = node.create_publisher(Float64, f"/wx_test/{GRIPPER.name}", GRIPPER.qos.profile())
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:  # until the bridge is connected
            pub.publish(Float64(data=1.0))
            time.sleep(0.1)
        assert received and received[-1] == pytest.approx([0.037]), (tmp_path / "bridge.log").read_text()
        for value in (math.nan, 0.0):
            pub.publish(Float64(data=value))
        deadline = time.monotonic() + 30
        while received[-1] != pytest.approx([0.015]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received[-1] == pytest.approx([0.015])
        assert all(not math.isnan(v[0]) for v in received)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.shutdown()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        log.close()
    output = (tmp_path / "bridge.log").read_text()
    assert code == 0, output
    assert "Exception ignored" not in output and "Traceback" not in output, output
    assert f"rejected command #1 on /wx_test/{GRIPPER.name}: gripper command must be a finite number" in output
