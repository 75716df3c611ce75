"""When a lockstep simulator may take its next tick: the controller's turn, as seen from its topics.

Pure bookkeeping (no ROS). Times are integer nanoseconds of simulated time. The controller is
*engaged* once its twists carry stamps on the simulator's clock; from then on every tick waits
for a twist stamped at (or after) that tick, and every camera frame waits for the controller's
reply (magma_node's ``~/action``, published after the commands it caused). A wait that ends
without them (``timed_out``) disengages that part until the controller shows up again.
"""
from __future__ import annotations

ENGAGE_WINDOW_NS = 1_000_000_000  # a twist stamped within 1 s of the sim clock follows /clock


class LockstepGate:
    """What the simulator has heard from the controller, and whether it must still wait."""

    def __init__(self) -> None:
        self.engaged = False  # twists follow the simulated clock: every tick waits for one
        self.frames_engaged = True  # the controller answers camera frames: each frame waits
        self.last_stamp_ns: int | None = None
        self.replies = 0  # controller replies (decoded actions) received so far
        self.timeouts = 0
        self.foreign_stamps = 0  # twists whose stamps are not on the simulated clock

    # ---- what arrives ----
    def on_twist(self, stamp_ns: int, now_ns: int) -> None:
        """A twist arrived while the simulator is at ``now_ns``."""
        if abs(stamp_ns - now_ns) > ENGAGE_WINDOW_NS:
            self.foreign_stamps += 1
            return
        self.last_stamp_ns = stamp_ns if self.last_stamp_ns is None else max(self.last_stamp_ns, stamp_ns)
        self.engaged = True

    def on_reply(self) -> None:
        """The controller finished its turn on a camera frame."""
        self.replies += 1
        self.frames_engaged = True

    def on_reset(self) -> None:
        """A new episode: expect replies to frames again."""
        self.frames_engaged = True

    # ---- what to wait for ----
    def tick_answered(self, tick_ns: int) -> bool:
        """The controller has published for this tick (or is not following the clock)."""
        return not self.engaged or (self.last_stamp_ns is not None and self.last_stamp_ns >= tick_ns)

    def expects_reply(self, has_instruction: bool) -> bool:
        """Whether the next camera frame should wait for the controller's reply."""
        return self.engaged and self.frames_engaged and has_instruction

    def reply_answered(self, replies_before: int) -> bool:
        """A reply arrived since the frame was published."""
        return self.replies > replies_before

    def tick_timed_out(self) -> None:
        """No twist for this tick in time: run without the controller until its next twist."""
        self.timeouts += 1
        self.engaged = False

    def reply_timed_out(self) -> None:
        """No reply to a frame in time: stop waiting for replies until the next one (or reset)."""
        self.timeouts += 1
        self.frames_engaged = False
