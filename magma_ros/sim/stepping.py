"""How ``magma_sim`` advances: paced by the steady clock (scaled real time), or in lockstep with
the controller (one tick only after it has had its turn: a twist stamped with that tick's time,
and after a camera frame its reply on the reply topic)."""
from __future__ import annotations

import time
from typing import Any, Callable

from .node import TICKS_PER_S, SimNode

MAX_CATCH_UP_TICKS = 12
CLOCK_REPEAT_S = 0.5  # lockstep: while waiting, /clock is repeated this often (wall clock)
FRAME_RESEND_S = 1.0  # lockstep: while waiting for a reply, the camera frame is resent this often (wall clock)
TICK_S = 1.0 / TICKS_PER_S

Stop = Callable[[], bool]


def run(node: SimNode, executor: Any, stop: Stop) -> None:
    """Step ``node`` until ``stop()``: in lockstep, or paced by the steady clock."""
    if node.lockstep:
        _run_lockstep(node, executor, stop)
    else:
        _run_real_time(node, executor, stop)


def _run_real_time(node: SimNode, executor: Any, stop: Stop) -> None:
    rtf = node.settings.real_time_factor
    wall_start = time.monotonic()
    while not stop():
        owed = (time.monotonic() - wall_start) * rtf - node.ticks * TICK_S
        for _ in range(min(MAX_CATCH_UP_TICKS, max(0, int(owed / TICK_S)))):
            _step_tick(node)
        if owed > MAX_CATCH_UP_TICKS * TICK_S * 4:  # too far behind: drop the debt rather than sprint
            wall_start += (owed - TICK_S) / rtf
        next_due = wall_start + (node.ticks + 1) * TICK_S / rtf
        executor.spin_once(timeout_sec=max(0.0, min(0.05, next_due - time.monotonic())))


def _step_tick(node: SimNode) -> None:
    """Real-time mode: one tick of physics, /clock, and a camera frame when one is due."""
    node.step_world()
    node.publish_clock()
    if node.world.time >= node.next_frame:
        node.next_frame = node.world.time + 1.0 / node.settings.camera_rate_hz
        node.publish_frame()


def _run_lockstep(node: SimNode, executor: Any, stop: Stop) -> None:
    camera_rate = node.settings.camera_rate_hz
    timeout = node.settings.lockstep_timeout_s
    log = node.get_logger()
    free_since: tuple[float, int] | None = None  # (wall, tick) when running without the controller
    while not stop():
        if node.pending_reset is not None:
            seed, node.pending_reset = node.pending_reset, None
            node.reset(seed)
        now = node.now_ns()
        node.publish_clock()
        if node.settle_ticks and node.ticks % max(1, int(round(TICKS_PER_S / camera_rate))) == 0:
            node.publish_frame(image=False)  # pose and status keep flowing while settling
        if not _wait(node, executor, stop, lambda: node.gate.tick_answered(now)):
            node.gate.tick_timed_out()
            log.warning(f"lockstep: no command stamped t={now * 1e-9:.3f} s within {timeout:g} s; "
                        "running without the controller")
        if node.settle_ticks:
            node.settle_ticks -= 1
            node.ticks += 1
        elif node.world.time >= node.next_frame - 1e-9:
            expect = node.gate.expects_reply(bool(node.instruction))
            replies = node.gate.replies
            node.next_frame = node.world.time + 1.0 / camera_rate
            node.publish_frame()
            if expect and not _wait(node, executor, stop, lambda: node.gate.reply_answered(replies),
                                    resend=node.resend_frame):
                node.gate.reply_timed_out()
                log.warning(f"lockstep: no reply on the reply topic to the frame at t={now * 1e-9:.3f} s within "
                            f"{timeout:g} s; frames no longer wait (is camera_rate_hz above the "
                            "controller's control rate, or is its backend failing?)")
            node.step_world()
        else:
            node.step_world()
        if node.gate.engaged:
            free_since = None
            executor.spin_once(timeout_sec=0.0)
            continue
        if free_since is None:  # no controller on our clock: real time until it shows up
            free_since = (time.monotonic(), node.ticks)
        due = free_since[0] + (node.ticks - free_since[1]) * TICK_S
        if time.monotonic() - due > MAX_CATCH_UP_TICKS * TICK_S:  # behind: drop the debt, never sprint
            free_since = (time.monotonic(), node.ticks)
        executor.spin_once(timeout_sec=0.0)  # inputs are served even when running behind
        while not stop() and not node.gate.engaged and time.monotonic() < due:
            executor.spin_once(timeout_sec=max(0.0, min(0.05, due - time.monotonic())))


def _wait(node: SimNode, executor: Any, stop: Stop, done: Stop, resend: Callable[[], None] | None = None) -> bool:
    """Spin until ``done()``; False after lockstep_timeout_s (wall clock). /clock is repeated
    meanwhile, in case the controller missed it, and so is the camera frame (``resend``)."""
    start = last_clock = last_frame = time.monotonic()
    while not done():
        if stop():
            return True
        now = time.monotonic()
        if now - start > node.settings.lockstep_timeout_s:
            return False
        if now - last_clock > CLOCK_REPEAT_S:
            node.publish_clock()
            last_clock = now
        if resend is not None and now - last_frame > FRAME_RESEND_S:
            resend()
            last_frame = now
        executor.spin_once(timeout_sec=0.05)
    return True
