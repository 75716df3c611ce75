"""magma_node's turn without ROS: a camera frame in, the policy run on the newest one for the
instruction in force, the action decoded, judged by the supervisor and handed to the outputs.

``ros.node.MagmaNode`` wires a ``NodeCore`` to its subscriptions and publishers; here the rules
can be tested with a fake clock and a fake policy:

- only frames the ``FrameGate`` admits (new, recent, stamped) reach the model; a rejected frame is
  counted, not a fault (the image watchdog stops the robot);
- the inference thread runs the policy on the newest frame (older ones not yet taken are dropped);
- a new instruction, a rejected one and a cleared one drop the held action, and a prediction made
  for an earlier instruction is discarded;
- a backend exception or an undecodable action is a policy fault (zero until a good action).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..actions.profiles import RobotProfile
from ..actions.twist import Twist
from ..image_msgs import ImageError
from ..policy.base import Policy
from .conversion import ActionConverter
from .frames import NO_CLOCK, REPEATED, FrameGate
from .inference import Frame, InferenceWorker
from .node_stats import NodeStats
from .supervisor import SafetySupervisor


@dataclass(frozen=True)
class TurnOutputs:
    """Where a turn's results go (the node's publishers and logger)."""

    command_now: Callable[[], object]  # publish the supervisor's command now, not at the next tick
    gripper: Callable[[float], None]  # an executed action's gripper command
    action: Callable[[np.ndarray], None]  # the decoded action: the end of a frame's turn (~/action)
    show: Callable[[np.ndarray, str, Twist, float, float], None]  # image, instruction, twist, gripper, inference s
    warn: Callable[[str], None]  # bad input, a fault (throttled by the receiver)
    ignored: Callable[[str], None]  # a frame ignored, not a fault (throttled on its own)
    info: Callable[[str], None]


class NodeCore:
    """Frames, instruction and inference of one node. ``clock`` (seconds) is the supervisor's;
    ``on_internal_error`` receives an exception of the node's own code in the inference thread."""

    def __init__(self, policy: Policy, profile: RobotProfile, supervisor: SafetySupervisor, frames: FrameGate,
                 stats: NodeStats, clock: Callable[[], float], outputs: TurnOutputs,
                 on_internal_error: Callable[[BaseException], None]) -> None:
        self.supervisor = supervisor
        self.frames = frames
        self.stats = stats
        self._now = clock
        self._out = outputs
        self._on_internal_error = on_internal_error
        self._lock = threading.Lock()  # instruction, its version, the converter and the policy
        self.policy: Policy | None = policy
        self.converter = ActionConverter(profile, policy.vocab_size)
        self.instruction = ""
        self._version = 0  # of the instruction; a prediction for an earlier one is discarded
        self._closed = False
        self.worker = self._new_worker()

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the inference thread."""
        self.worker.start()

    def stop(self, timeout: float) -> bool:
        """Ask the inference thread to end after a model call in flight; True when it has. A new
        thread is ready for ``start`` either way."""
        stopped = self.worker.stop(timeout=timeout)
        self.worker = self._new_worker()
        return stopped

    def close(self) -> None:
        """From now on no prediction is made or executed."""
        with self._lock:
            self._closed = True

    def set_policy(self, policy: Policy | None, profile: RobotProfile | None = None) -> None:
        """Use ``policy`` (None: released) and a converter for ``profile`` from the next frame on."""
        with self._lock:
            self.policy = policy
            if policy is not None and profile is not None:
                self.converter = ActionConverter(profile, policy.vocab_size)

    def _new_worker(self) -> InferenceWorker:
        return InferenceWorker(self.infer, lambda: self.supervisor.timing.control_period_s, self._on_internal_error,
                               self._now)

    # --- inputs --------------------------------------------------------------------------------
    def accept_image(self, sec: int, nanosec: int, convert: Callable[[], np.ndarray]) -> bool:
        """A camera frame stamped ``sec``/``nanosec``: if the gate admits it, ``convert()`` its
        pixels and offer it to the inference thread (the newest replaces one not yet taken).
        Returns whether it was offered."""
        arrived = self._now()
        self.stats.count("images_received")
        rejection = self.frames.admit(sec, nanosec)
        if rejection is not None:  # ignored, not a fault: the image watchdog stops the robot
            self.stats.count(rejection.counter)
            # not logged: repeats (routine: magma_sim resends a frame it fears was lost) and frames
            # without a valid clock (the clock fault is logged)
            if rejection.counter not in (REPEATED, NO_CLOCK):
                self._out.ignored(f"image ignored: {rejection.message}")
            return False
        try:
            image = convert()
        except ImageError as exc:
            self.reject("image", "images_rejected", f"image rejected: {exc}")
            return False
        self.stats.image_rate.mark()
        epoch = self.supervisor.image_ok()
        self.worker.submit(Frame(image=image, arrived=arrived, epoch=epoch))
        return True

    def set_instruction(self, text: str, max_chars: int) -> bool:
        """A new instruction (stripped): in force if valid, else the instruction is cleared and the
        node faults. Either way the held action is dropped. Returns whether it was valid."""
        text = text.strip()
        if not text:
            self.clear_instruction("instructions_rejected", "instruction rejected: empty")
            return False
        if len(text) > max_chars:
            self.clear_instruction("instructions_rejected", f"instruction rejected: {len(text)} characters, "
                                   f"more than max_instruction_chars ({max_chars})")
            return False
        self._change_instruction(text)
        self._out.info(f"instruction: {text!r}")
        self._out.command_now()
        return True

    def clear_instruction(self, counter: str | None, message: str) -> None:
        """No instruction in force (zero until a valid one): ``message`` is the instruction fault,
        counted in ``counter`` (and warned about) unless None."""
        self._change_instruction("")
        if counter is None:
            self.supervisor.reject("instruction", message)
            self._out.command_now()
        else:
            self.reject("instruction", counter, message)

    def _change_instruction(self, text: str) -> None:
        """The one place the instruction changes: predictions for the previous one are discarded
        and the held action is dropped (by ``instruction_ok`` here, by the fault when cleared)."""
        with self._lock:  # an instruction change cannot slip in between a prediction and its hold
            self.instruction = text
            self._version += 1
            self.converter.reset()
            if text:
                self.supervisor.instruction_ok()

    def accept_ee_pose(self, frame_id: str, expected_frame_id: str, position: tuple[float, float, float]) -> None:
        """An end-effector position in ``frame_id``: a fault unless in the robot base frame and finite."""
        if frame_id != expected_frame_id:
            self.reject("ee_pose", "ee_poses_rejected", f"end-effector pose in frame {frame_id!r}, "
                        f"expected {expected_frame_id!r}")
        elif not all(math.isfinite(v) for v in position):
            self.reject("ee_pose", "ee_poses_rejected", f"end-effector position not finite: {position}")
        else:
            self.supervisor.ee_pose(position)

    def reject(self, source: str, counter: str, message: str) -> None:
        """Bad input from ``source``: counted, warned about, a fault that commands zero now."""
        self.stats.count(counter)
        self.supervisor.reject(source, message)
        self._out.warn(message)
        self._out.command_now()

    # --- the inference thread ------------------------------------------------------------------
    def infer(self, frame: Frame) -> None:
        """One turn: the policy on ``frame`` for the instruction in force; the action, if still
        wanted, goes to the supervisor and the outputs."""
        with self._lock:
            instruction, version, policy = self.instruction, self._version, self.policy
        if not instruction or self._closed or policy is None:
            return
        started = self._now()
        try:
            prediction = policy.predict(frame.image, instruction)
        except Exception as exc:  # noqa: BLE001 - any backend failure is a fault that stops the robot
            self.reject("policy", "policy_errors", f"backend error: {type(exc).__name__}: {exc}")
            return
        inference = self._now() - started
        self.stats.count("predictions")
        self.stats.inference_s.append(inference)
        try:
            with self._lock:  # an instruction change cannot slip in before the action is held
                if version != self._version or self._closed:
                    return  # the instruction changed while the model ran
                action = self.converter.action(prediction)
                twist, gripper = self.converter.command(action, self.supervisor.timing.control_period_s)
                executed = self.supervisor.action_ok(twist, frame.epoch)
        except ValueError as exc:
            self.reject("policy", "actions_rejected", f"action rejected: {exc}")
            return
        self.stats.action_rate.mark()
        if executed:
            self._out.command_now()  # at once, not at the next tick
            self._out.gripper(float(gripper))
            self.stats.count("actions_executed")
            self.stats.overhead_s.append(self._now() - frame.arrived - inference)
        # the action marks the end of this frame's turn (a lockstep simulator waits for it); then the views
        self._out.action(action)
        self._out.show(frame.image, instruction, twist, gripper, inference)
