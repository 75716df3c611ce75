"""magma_node as its own process (fixed backend, +x): only new, recent, stamped camera frames
move the arm. Frames whose stamps alternate between two old values, one old frame replayed at
30 Hz and unstamped frames never produce a non-zero twist, and /diagnostics counts each rule;
a live camera with fresh stamps still drives the arm (issue 23)."""
from __future__ import annotations

import itertools

import pytest
from builtin_interfaces.msg import Time
from node_support import is_zero, rgb_image, running_node, stamp_s, topic_params, topics_under, twist_values, wait_until

TOPICS = topics_under("frames")
PLUS_X = (0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # 5 cm/s along +x at bridge_orig's 5 Hz


@pytest.fixture(scope="module")
def node(console_script, tmp_path_factory):
    params = {"backend": "fixed", "fixed_action": PLUS_X, "enabled_on_start": True, "instruction": "frames test",
              "max_linear_accel": 100.0, "max_angular_accel": 100.0, **topic_params(TOPICS)}
    with running_node(console_script, "frames_node", params, tmp_path_factory.mktemp("frames"),
                      TOPICS) as (proc, probe):
        yield proc, probe


def counter(probe, name: str) -> int:
    return int(probe.state().get(name, "0"))


def ros_now(probe) -> float:
    """The probe's ROS time (system time, as the node's): compare with twist stamps."""
    return probe.node.get_clock().now().nanoseconds * 1e-9


def attack(node, stamps, rate_hz: float, rule: str, frames: int = 20) -> dict[str, str]:
    """With the robot stopped, stream frames stamped with ``stamps`` until ``frames`` of them
    arrived: no twist stamped from the start of the stream on may be non-zero, and ``rule``
    dropped them all."""
    proc, probe = node
    with probe.stream(rgb_image()):  # a live camera first: it moves the arm
        probe.wait_motion(60)
    probe.wait_stop(30)  # the image watchdog (0.5 s) after the camera stopped
    before = probe.wait_state("no_image", 30)
    started = ros_now(probe)
    with probe.stream(rgb_image(), rate_hz=rate_hz, stamps=stamps):
        state = wait_until(lambda: probe.state() if counter(probe, "images_received") >=
                           int(before["images_received"]) + frames else None, 60,
                           what=f"{frames} frames received: {probe.state()}; node log:\n{proc.output()}")
    wait_until(lambda: any(stamp_s(m) > started + 1.0 for _, m in list(probe.twists.items)), 30,
               what="twists stamped a second into the stream")
    during = [m for _, m in list(probe.twists.items) if stamp_s(m) >= started]
    moving = [(round(stamp_s(m) - started, 3), twist_values(m)) for m in during if not is_zero(m)]
    assert not moving, f"{len(moving)} of {len(during)} twists non-zero: {moving[:5]}"
    received = int(state["images_received"]) - int(before["images_received"])
    dropped = int(state.get(rule, 0)) - int(before.get(rule, 0))
    assert received - 1 <= dropped <= received, (rule, before, state)  # (one may be between the two counts)
    assert "Traceback" not in proc.output()
    return state


def test_a_live_camera_with_fresh_stamps_drives_the_arm(node):
    proc, probe = node
    with probe.stream(rgb_image(), rate_hz=30.0):
        msg = probe.wait_steady_motion(60)
    assert twist_values(msg)[0] == pytest.approx(PLUS_X[0] * 5.0) and not any(twist_values(msg)[1:])


def test_frames_alternating_between_two_old_stamps_never_move_the_arm(node):
    """(100 s, 1 ns) and (100 s, 2 ns) in turn at 10 Hz: only the frame just before used to be compared."""
    stamps = itertools.cycle([Time(sec=100, nanosec=1), Time(sec=100, nanosec=2)])
    state = attack(node, stamps, 10.0, "images_too_old")
    assert "more than max_image_age_s (0.4 s)" in state["last_image_rejection"], state
    assert state["max_image_age_s"] == "0.400", state  # two control periods of bridge_orig (5 Hz)


def test_one_old_frame_replayed_at_30_hz_never_moves_the_arm(node):
    _, probe = node
    old = ros_now(probe) - 5.0
    stamp = Time(sec=int(old), nanosec=int((old % 1.0) * 1e9))
    state = attack(node, itertools.repeat(stamp), 30.0, "images_too_old", frames=30)
    assert "s before the node's clock" in state["last_image_rejection"], state


def test_unstamped_frames_are_ignored_by_default(node):
    state = attack(node, itertools.repeat(Time()), 20.0, "images_unstamped")
    assert "allow_unstamped_images" in state["last_image_rejection"], state


def test_unstamped_frames_drive_the_arm_only_when_allowed(console_script, tmp_path):
    topics = topics_under("frames_unstamped")
    params = {"backend": "fixed", "fixed_action": PLUS_X, "enabled_on_start": True, "instruction": "frames test",
              "allow_unstamped_images": True, **topic_params(topics)}
    with running_node(console_script, "unstamped_node", params, tmp_path, topics) as (proc, probe):
        with probe.stream(rgb_image(), stamps=itertools.repeat(Time())):
            probe.wait_motion(60)
        assert "allow_unstamped_images: camera frames stamped 0 are taken as stamped on arrival" in proc.output()
        assert counter(probe, "images_unstamped") == 0
