"""The node's turn without ROS (magma_ros.safety.node_core.NodeCore): frames, instructions and
inference on a clock the test sets, with a policy the test scripts. No rclpy, no process."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from waiting import wait_until

from magma_ros.actions.profiles import load_profile
from magma_ros.image_msgs import ImageError
from magma_ros.policy.base import PolicyError, Prediction
from magma_ros.safety.frames import FrameGate
from magma_ros.safety.inference import Frame
from magma_ros.safety.limits import DEFAULT_MOTION_LIMITS, SafetyLimits, WatchdogTiming
from magma_ros.safety.node_core import NodeCore, TurnOutputs
from magma_ros.safety.node_stats import NodeStats
from magma_ros.safety.supervisor import SafetyState, SafetySupervisor

MOVE = (0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0)
START_S = 1000


class Clock:
    """Seconds the test sets (the supervisor's clock and, in ns, the frame gate's)."""

    def __init__(self) -> None:
        self.t = float(START_S)

    def __call__(self) -> float:
        return self.t

    def ns(self) -> int:
        return round(self.t * 1e9)


class ScriptedPolicy:
    """Moves by MOVE; ``fail`` raises from predict, ``during`` runs inside predict."""

    vocab_size = 128000

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []  # (first pixel, instruction) of each call
        self.fail: Exception | None = None
        self.prediction = Prediction(action=np.array(MOVE))
        self.during = lambda: None
        self.called = threading.Event()

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        self.calls.append((int(image.flat[0]), instruction))
        self.called.set()
        self.during()
        if self.fail is not None:
            raise self.fail
        return self.prediction

    def close(self) -> None:
        pass


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.policy = ScriptedPolicy()
        profile = load_profile("bridge_orig")
        limits = SafetyLimits.from_profile(profile, 5.0, **DEFAULT_MOTION_LIMITS)
        timing = WatchdogTiming(control_period_s=0.2, publish_period_s=0.02, image_timeout_s=0.5,
                                action_timeout_s=2.0, ee_pose_timeout_s=0.5)
        self.supervisor = SafetySupervisor(limits, timing, self.clock, enabled=True)
        self.stats = NodeStats(self.clock)
        self.commands = 0
        self.grippers: list[float] = []
        self.actions: list[np.ndarray] = []
        self.shown: list[str] = []
        self.warnings: list[str] = []
        self.internal: list[BaseException] = []
        outputs = TurnOutputs(command_now=self._command, gripper=self.grippers.append, action=self.actions.append,
                              show=lambda image, instruction, *rest: self.shown.append(instruction),
                              warn=self.warnings.append, ignored=self.warnings.append, info=lambda text: None)
        self.core = NodeCore(self.policy, profile, self.supervisor, FrameGate(self.clock.ns, 0.4), self.stats,
                             self.clock, outputs, self.internal.append)

    def _command(self) -> None:
        self.commands += 1

    def image(self, value: int = 0, stamp_s: float | None = None) -> bool:
        """A frame of pixels ``value`` stamped ``stamp_s`` (default: now) through the gate."""
        ns = self.clock.ns() if stamp_s is None else round(stamp_s * 1e9)
        return self.core.accept_image(ns // 10**9, ns % 10**9, lambda: np.full((4, 4, 3), value, np.uint8))

    def frame(self, value: int = 0) -> Frame:
        """A frame as the inference thread would take it (an image arrived now)."""
        return Frame(image=np.full((4, 4, 3), value, np.uint8), arrived=self.clock(),
                     epoch=self.supervisor.image_ok())

    def moving(self) -> bool:
        """Whether the next publish tick (one period on) commands motion."""
        self.clock.t += 0.02
        return not self.supervisor.tick().twist.is_zero()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_the_newest_frame_wins(h):
    """Frames offered while the inference thread is busy replace one another: the next turn runs
    the newest, the ones in between are counted as dropped."""
    release = threading.Event()
    h.policy.during = lambda: release.wait(10)
    h.core.set_instruction("pick", 100)
    h.core.start()
    try:
        assert h.image(1)
        wait_until(h.policy.called.is_set, 10, what="the first prediction")
        h.policy.called.clear()
        for value in (2, 3, 4):  # while the model runs on frame 1
            h.clock.t += 0.05
            assert h.image(value)
        h.clock.t += 1.0  # past the control period: the thread may take the next frame
        release.set()
        wait_until(lambda: len(h.policy.calls) >= 2, 10, what="the second prediction")
    finally:
        assert h.core.stop(10)
    assert [pixel for pixel, _ in h.policy.calls] == [1, 4]
    assert h.core.worker.dropped == 0  # a fresh thread for the next start
    assert h.stats.counters["images_received"] == 4


def test_a_repeated_stamp_is_ignored_and_not_converted(h):
    converted = []

    def convert():
        converted.append(1)
        return np.zeros((4, 4, 3), np.uint8)

    stamp = h.clock.ns()
    assert h.core.accept_image(stamp // 10**9, stamp % 10**9, convert)
    h.clock.t += 0.03
    assert not h.core.accept_image(stamp // 10**9, stamp % 10**9, convert)
    assert converted == [1]
    counters = h.stats.counters
    assert (counters["images_received"], counters["images_repeated"]) == (2, 1)
    assert h.warnings == []  # repeats are routine: not logged
    assert h.supervisor.faults == {}  # ignored, not a fault


def test_a_frame_too_old_is_warned_about_and_counted(h):
    assert not h.image(stamp_s=START_S - 5.0)
    assert h.stats.counters["images_too_old"] == 1
    assert len(h.warnings) == 1 and h.warnings[0].startswith("image ignored: ")
    assert h.core.frames.last_rejection


def test_an_image_that_cannot_be_converted_is_a_fault(h):
    def broken():
        raise ImageError("encoding 'yuv' not supported")

    ns = h.clock.ns()
    assert not h.core.accept_image(ns // 10**9, ns % 10**9, broken)
    assert "image" in h.supervisor.faults
    assert h.stats.counters["images_rejected"] == 1
    assert h.commands == 1  # zero at once


def test_an_executed_action_reaches_every_output(h):
    h.core.set_instruction("  pick  ", 100)
    assert h.core.instruction == "pick"
    h.core.infer(h.frame(7))
    assert h.policy.calls == [(7, "pick")]
    assert h.moving()
    assert h.grippers == [1.0]
    assert len(h.actions) == 1 and np.allclose(h.actions[0], MOVE)
    assert h.shown == ["pick"]
    assert h.stats.counters["actions_executed"] == 1


def test_an_instruction_change_drops_the_held_action(h):
    h.core.set_instruction("pick", 100)
    h.core.infer(h.frame())
    assert h.moving()
    h.core.set_instruction("place", 100)
    assert h.supervisor.tick().twist.is_zero()
    h.core.infer(h.frame())
    assert h.policy.calls[-1][1] == "place"
    assert h.moving()


def test_a_prediction_for_an_earlier_instruction_is_discarded(h):
    h.core.set_instruction("pick", 100)
    h.policy.during = lambda: h.core.set_instruction("place", 100)  # arrives while the model runs
    h.core.infer(h.frame())
    assert h.actions == [] and h.grippers == []
    assert not h.moving()
    assert h.stats.counters["predictions"] == 1 and h.stats.counters["actions_executed"] == 0


@pytest.mark.parametrize("text, why", [("   ", "empty"),
                                       ("x" * 11, "11 characters, more than max_instruction_chars (10)")])
def test_a_rejected_instruction_clears_the_one_in_force(h, text, why):
    h.core.set_instruction("pick", 10)
    h.core.infer(h.frame())
    assert h.moving()
    assert not h.core.set_instruction(text, 10)
    assert h.core.instruction == ""
    assert h.warnings == [f"instruction rejected: {why}"]
    assert h.stats.counters["instructions_rejected"] == 1
    assert h.supervisor.tick().state is SafetyState.FAULT
    h.core.infer(h.frame())
    assert len(h.policy.calls) == 1  # no instruction: the model is not asked


def test_a_cleared_instruction_stops_without_counting_a_rejection(h):
    h.core.set_instruction("pick", 100)
    h.core.infer(h.frame())
    h.core.clear_instruction(None, "instruction parameter cleared")
    assert h.core.instruction == ""
    assert h.supervisor.faults == {"instruction": "instruction parameter cleared"}
    assert h.stats.counters["instructions_rejected"] == 0
    assert h.supervisor.tick().twist.is_zero()


def test_a_backend_error_is_a_policy_fault(h):
    h.core.set_instruction("pick", 100)
    h.policy.fail = PolicyError("endpoint unreachable")
    commands = h.commands
    h.core.infer(h.frame())
    assert h.supervisor.faults == {"policy": "backend error: PolicyError: endpoint unreachable"}
    assert h.stats.counters["policy_errors"] == 1
    assert h.commands == commands + 1  # zero at once
    assert h.actions == [] and h.internal == []
    assert h.supervisor.tick().state is SafetyState.FAULT
    h.policy.fail = None  # a good action clears it
    h.core.infer(h.frame())
    assert h.moving()


def test_an_undecodable_action_is_a_policy_fault(h):
    h.core.set_instruction("pick", 100)
    h.policy.prediction = Prediction(token_ids=np.array([5, 6, 7, 8, 9, 10, 11]))  # not action tokens
    h.core.infer(h.frame())
    assert "policy" in h.supervisor.faults
    assert h.supervisor.faults["policy"].startswith("action rejected: ")
    assert h.stats.counters["actions_rejected"] == 1


def test_an_error_in_the_turn_itself_goes_to_the_internal_error_handler(h):
    """Not the backend's: an output that raises in the inference thread is the node's own error."""
    def broken(action):
        raise RuntimeError("publisher gone")

    h.core._out = TurnOutputs(**{**h.core._out.__dict__, "action": broken})
    h.core.set_instruction("pick", 100)
    h.core.start()
    try:
        assert h.image()
        wait_until(lambda: h.internal, 10, what="the internal error")
    finally:
        assert h.core.stop(10)
    assert isinstance(h.internal[0], RuntimeError)


def test_a_closed_core_asks_the_model_nothing(h):
    h.core.set_instruction("pick", 100)
    h.core.close()
    h.core.infer(h.frame())
    assert h.policy.calls == []


@pytest.mark.parametrize("frame_id, position, why", [
    ("camera", (0.3, 0.0, 0.2), "end-effector pose in frame 'camera', expected 'base_link'"),
    ("base_link", (0.3, float("nan"), 0.2), "end-effector position not finite: (0.3, nan, 0.2)"),
])
def test_a_bad_end_effector_pose_is_a_fault(h, frame_id, position, why):
    h.core.accept_ee_pose(frame_id, "base_link", position)
    assert h.supervisor.faults == {"ee_pose": why}
    assert h.stats.counters["ee_poses_rejected"] == 1
    h.core.accept_ee_pose("base_link", "base_link", (0.3, 0.0, 0.2))
    assert h.supervisor.faults == {}
    assert np.allclose(h.supervisor.ee_position, (0.3, 0.0, 0.2))
