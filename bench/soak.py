"""Soak of magma_node as a process (fixed backend), then its shutdown time; prints figures, no assertions.

Soak: camera images at 30 Hz with one bad frame in three (wrong encoding, wrong data length, zero
size in turn), and every few seconds one of: an instruction change (sometimes empty or too long),
a parameter change (speed limits, control rate, image timeout; sometimes an invalid value), an
e-stop asserted, released and reset, or a disable/enable. Every twist received is checked:

- crashes: the node process ended by itself (plus tracebacks in its log and ``internal_errors``);
- non-zero twists while stopped: stamped after the node reported ``estop`` on /diagnostics and
  before the ``~/reset`` request, or after a ``~/enable false`` reply and before the next enable;
- limit violations: a twist above the speed limits (norm and per axis) in force when it was
  stamped (after a change is acknowledged the new limits; while it is in flight the larger of both);
- twists while quietly disabled: stamped more than ``disabled_zero_s`` + 0.5 s after a disable.

Shutdown: SIGINT and SIGTERM, each on the wall clock, with use_sim_time and no /clock, and with
use_sim_time and a /clock: seconds from the signal to the process's exit, the exit status, and
whether a final zero twist arrived.

    python bench/soak.py [--minutes 10] [--seed 0] [--no-shutdown]
"""
from __future__ import annotations

import argparse
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

import numpy as np
import rclpy
import rclpy.time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from magma_ros.actions import load_profile
from magma_ros.interface import CLOCK, DIAGNOSTICS, ENABLE, ESTOP, GRIPPER, IMAGE, INSTRUCTION, RESET, TWIST

NODE_SCRIPT = str(Path(sys.executable).parent / "magma_node")
FIXED = (0.06, -0.02, 0.01, 0.0, 0.0, 0.2, 1.0)  # 0.3 m/s in x at 5 Hz: above both speed limits
DISABLED_ZERO_S = 1.0
INITIAL = {"max_linear_speed": 0.25, "max_angular_speed": 1.0, "control_rate_hz": 0.0}
CHANGES = {"max_linear_speed": [0.25, 0.1, 0.02], "max_angular_speed": [1.0, 0.3],
           "control_rate_hz": [0.0, 2.5, 10.0], "image_timeout_s": [0.5, 0.2]}
INSTRUCTIONS = ["pick up the block", "move left", "open the drawer", "", "x" * 2000]


def topics(prefix: str) -> dict[str, str]:
    """Node parameters moving its topics under ``/prefix``."""
    return {f"{key}_topic": f"/{prefix}/{topic.name}" for key, topic in
            (("image", IMAGE), ("instruction", INSTRUCTION), ("estop", ESTOP), ("twist", TWIST), ("gripper", GRIPPER))}


def start_node(name: str, params: dict[str, Any], log: Path) -> subprocess.Popen:
    args = [NODE_SCRIPT, "--ros-args", "-r", f"__node:={name}"]
    for key, value in params.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, (list, tuple)):
            value = "[" + ",".join(repr(float(v)) for v in value) + "]"
        args += ["-p", f"{key}:={value}"]
    return subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stamp_s(msg: Any) -> float:
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class Probe:
    """The soak's side of the node's topics and services, in a private rclpy context."""

    def __init__(self, node_name: str, names: dict[str, str], on_twist: Callable[[float, TwistStamped], None]) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.target = node_name
        self.node = rclpy.create_node(f"soak_probe_{node_name}", context=self.context)
        n = self.node
        self.image_pub = n.create_publisher(Image, names["image_topic"], IMAGE.qos.profile())
        self.instruction_pub = n.create_publisher(String, names["instruction_topic"], INSTRUCTION.qos.profile())
        self.estop_pub = n.create_publisher(Bool, names["estop_topic"], ESTOP.qos.profile())
        self.clock_pub = n.create_publisher(Clock, CLOCK.name, CLOCK.qos.profile())
        self.on_twist = on_twist
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_at = 0.0
        n.create_subscription(TwistStamped, names["twist_topic"], lambda m: self.on_twist(time.time(), m),
                              TWIST.qos.profile())
        n.create_subscription(DiagnosticArray, DIAGNOSTICS.name, self._on_diagnostics, DIAGNOSTICS.qos.profile())
        self.clients = {"enable": n.create_client(SetBool, f"/{node_name}/{ENABLE.name[2:]}"),
                        "reset": n.create_client(Trigger, f"/{node_name}/{RESET.name[2:]}"),
                        "params": n.create_client(SetParameters, f"/{node_name}/set_parameters")}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{self.target}: safety":
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_at = time.time()

    def call(self, name: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.clients[name]
        if not client.wait_for_service(timeout_sec=timeout):
            raise RuntimeError(f"service {name} of {self.target} not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no reply from {name} within {timeout} s")
            time.sleep(0.005)
        return future.result()

    def wait_state(self, state: str, since: float, timeout: float = 30.0) -> float | None:
        """Wall time at which diagnostics newer than ``since`` showed ``state`` (None: timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.diagnostics_at > since and self.diagnostics.get("state") == state:
                return self.diagnostics_at
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self._spin.join()
        self.node.destroy_node()
        self.context.shutdown()


@dataclass
class LimitChange:
    requested: float
    acknowledged: float
    values: dict[str, float]


@dataclass
class Soak:
    """Bookkeeping of one soak run: what was sent, what came back, what went wrong."""

    profile: Any
    limit_changes: list[LimitChange] = field(default_factory=list)
    stopped: list[list[float]] = field(default_factory=list)  # [from, to] wall time (to=inf: ongoing)
    quiet: list[list[float]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    worst_excess: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def limits_at(self, t: float) -> dict[str, float]:
        current = dict(INITIAL)
        for change in self.limit_changes:
            if t >= change.acknowledged:
                current.update(change.values)
            elif t >= change.requested:  # in flight: either may apply
                for key, value in change.values.items():
                    current[key] = max(current.get(key, value), value)
                break
            else:
                break
        return current

    def on_twist(self, arrived: float, msg: TwistStamped) -> None:
        t = stamp_s(msg)
        lin = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z])
        ang = np.array([msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z])
        moving = bool(np.any(lin) or np.any(ang))
        with self.lock:
            self.counts["twists"] += 1
            self.counts["moving twists"] += moving
            if any(a <= t < b for a, b in self.stopped) and moving:
                self.counts["non-zero twists while stopped"] += 1
            if any(a <= t < b for a, b in self.quiet):
                self.counts["twists while quietly disabled"] += 1
            lim = self.limits_at(t)
            rate = lim["control_rate_hz"] or self.profile.control_rate_hz
            bounds = [(np.linalg.norm(lin), lim["max_linear_speed"]),
                      (np.abs(lin).max(), self.profile.limits.max_linear_step * rate),
                      (np.linalg.norm(ang), lim["max_angular_speed"]),
                      (np.abs(ang).max(), self.profile.limits.max_angular_step * rate)]
            for value, bound in bounds:
                if value > bound * (1 + 1e-9) + 1e-12:
                    self.counts["limit violations"] += 1
                    self.worst_excess = max(self.worst_excess, value - bound)


def bad_frames() -> list[Image]:
    wrong_encoding = good_frame()
    wrong_encoding.encoding = "yuv422"
    wrong_length = good_frame()
    wrong_length.height = 47
    empty = Image(height=0, width=0, encoding="rgb8", step=0)
    return [wrong_encoding, wrong_length, empty]


def good_frame() -> Image:
    msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    msg.data = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).tobytes()
    return msg


def stream_images(probe: Probe, stop: threading.Event, soak: Soak, rate_hz: float = 30.0) -> None:
    good, bad = good_frame(), bad_frames()
    period, k = 1.0 / rate_hz, 0
    next_at = time.monotonic()
    while not stop.is_set():
        msg = bad[(k // 3) % 3] if k % 3 == 2 else good
        msg.header.stamp = probe.node.get_clock().now().to_msg()
        probe.image_pub.publish(msg)
        soak.counts["bad images sent" if k % 3 == 2 else "good images sent"] += 1
        k += 1
        next_at += period
        stop.wait(max(0.0, next_at - time.monotonic()))


def run_soak(minutes: float, seed: int, log_dir: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    names = topics("soak")
    params = {"backend": "fixed", "fixed_action": FIXED, "enabled_on_start": True, "instruction": "pick up the block",
              "disabled_zero_s": DISABLED_ZERO_S, **names}
    log = log_dir / "soak_node.log"
    proc = start_node("soak_node", params, log)
    soak = Soak(profile=load_profile("bridge_orig"))
    probe = Probe("soak_node", names, soak.on_twist)
    stop = threading.Event()
    images = threading.Thread(target=stream_images, args=(probe, stop, soak), daemon=True)
    crashed = False
    started = time.monotonic()
    try:
        probe.call("enable", SetBool.Request(data=True), timeout=120.0)
        images.start()
        end = started + 60.0 * minutes
        while time.monotonic() < end:
            if proc.poll() is not None:
                crashed = True
                break
            time.sleep(rng.uniform(1.0, 4.0))
            event = rng.choice(["instruction", "instruction", "parameters", "parameters", "estop", "disable"])
            soak.counts[f"events: {event}"] += 1
            if event == "instruction":
                change_instruction(probe, soak, rng)
            elif event == "parameters":
                change_parameters(probe, soak, rng)
            elif event == "estop":
                estop_cycle(probe, soak, rng)
            else:
                disable_cycle(probe, soak, rng)
            probe.instruction_pub.publish(String(data=rng.choice(INSTRUCTIONS[:3])))  # back to a valid one
        crashed = crashed or proc.poll() is not None
    finally:
        stop.set()
        if images.is_alive():
            images.join()
        diagnostics = dict(probe.diagnostics)
        shutdown = stop_node(proc, probe, signal.SIGINT, soak)
        probe.close()
    text = log.read_text()
    return {"minutes": (time.monotonic() - started) / 60.0, "crashed": crashed, "soak": soak,
            "tracebacks": text.count("Traceback"), "diagnostics": diagnostics, "shutdown": shutdown,
            "log": log}


def change_instruction(probe: Probe, soak: Soak, rng: random.Random) -> None:
    text = rng.choice(INSTRUCTIONS)
    before, sent = int(probe.diagnostics.get("instructions_rejected", "0")), time.time()
    probe.instruction_pub.publish(String(data=text))
    if 0 < len(text) <= 1000:
        return
    # the instruction topic keeps one message: let the node see the bad one before the next
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if probe.diagnostics_at > sent and int(probe.diagnostics.get("instructions_rejected", "0")) > before:
            soak.counts["bad instructions rejected"] += 1
            return
        time.sleep(0.01)
    soak.counts["bad instructions not rejected"] += 1


def change_parameters(probe: Probe, soak: Soak, rng: random.Random) -> None:
    if rng.random() < 0.15:
        reply = probe.call("params", SetParameters.Request(
            parameters=[Parameter("max_linear_speed", value=-1.0).to_parameter_msg()]))
        soak.counts["invalid parameter changes rejected"] += not reply.results[0].successful
        return
    name = rng.choice(list(CHANGES))
    value = rng.choice(CHANGES[name])
    requested = time.time()
    reply = probe.call("params", SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    if not reply.results[0].successful:
        soak.counts["valid parameter changes refused"] += 1
        return
    if name in INITIAL:
        with soak.lock:
            soak.limit_changes.append(LimitChange(requested, time.time(), {name: value}))


def estop_cycle(probe: Probe, soak: Soak, rng: random.Random) -> None:
    sent = time.time()
    probe.estop_pub.publish(Bool(data=True))
    seen = probe.wait_state("estop", sent)
    if seen is None:
        soak.counts["e-stops not reported"] += 1
        return
    with soak.lock:
        window = [seen, math.inf]
        soak.stopped.append(window)
    time.sleep(rng.uniform(0.5, 2.0))
    probe.estop_pub.publish(Bool(data=False))
    time.sleep(0.1)
    with soak.lock:
        window[1] = time.time()
    reply = probe.call("reset", Trigger.Request())
    soak.counts["resets refused"] += not reply.success


def disable_cycle(probe: Probe, soak: Soak, rng: random.Random) -> None:
    probe.call("enable", SetBool.Request(data=False))
    acknowledged = time.time()
    with soak.lock:
        window = [acknowledged, math.inf]
        quiet = [acknowledged + DISABLED_ZERO_S + 0.5, math.inf]
        soak.stopped.append(window)
        soak.quiet.append(quiet)
    time.sleep(rng.uniform(2.0, 4.0))
    with soak.lock:
        window[1] = quiet[1] = time.time()
    probe.call("enable", SetBool.Request(data=True))


def stop_node(proc: subprocess.Popen, probe: Probe, signum: int, soak: Soak | None = None) -> dict[str, Any]:
    """Send ``signum``; seconds to exit, exit status, and whether a zero twist arrived after it."""
    after: list[TwistStamped] = []
    previous = probe.on_twist
    probe.on_twist = lambda arrived, msg: (after.append(msg), previous(arrived, msg))
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=30.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    exit_s = time.monotonic() - sent
    deadline = time.monotonic() + 2.0
    while not after and time.monotonic() < deadline:
        time.sleep(0.01)
    final = after[-1] if after else None
    zero = final is not None and not any((final.twist.linear.x, final.twist.linear.y, final.twist.linear.z,
                                          final.twist.angular.x, final.twist.angular.y, final.twist.angular.z))
    return {"exit_s": exit_s, "code": code, "final_zero": zero}


def shutdown_round(mode: str, signum: int, log_dir: Path) -> dict[str, Any]:
    names = topics(f"sd_{mode}")
    params = {"backend": "fixed", "fixed_action": FIXED, "enabled_on_start": True, "instruction": "stop test", **names}
    if mode != "wall":
        params["use_sim_time"] = True
    name = f"shutdown_{mode}_{signal.Signals(signum).name.lower()}"
    proc = start_node(name, params, log_dir / f"{name}.log")
    received: list[TwistStamped] = []
    probe = Probe(name, names, lambda arrived, msg: received.append(msg))
    stop = threading.Event()
    clock = None
    if mode == "sim_clock":
        def publish_clock() -> None:
            t0 = time.monotonic()
            while not stop.is_set():
                t = 1000.0 + time.monotonic() - t0
                probe.clock_pub.publish(Clock(clock=rclpy.time.Time(seconds=t).to_msg()))
                stop.wait(0.01)
        clock = threading.Thread(target=publish_clock, daemon=True)
        clock.start()
    try:
        try:
            probe.call("enable", SetBool.Request(data=True), timeout=120.0)  # up, and publishes one command
        except RuntimeError:
            proc.kill()
            return {"exit_s": math.nan, "code": f"{proc.wait()} (did not start)", "final_zero": False}
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline:
            time.sleep(0.01)
        result = stop_node(proc, probe, signum)
    finally:
        stop.set()
        if clock is not None:
            clock.join()
        probe.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the event schedule")
    parser.add_argument("--no-shutdown", action="store_true", help="skip the shutdown-time rounds")
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="magma_soak_"))
    print(f"magma_node soak: {args.minutes:g} min, seed {args.seed}, logs in {log_dir}", flush=True)
    result = run_soak(args.minutes, args.seed, log_dir)
    soak, shutdown = result["soak"], result["shutdown"]
    c, d = soak.counts, result["diagnostics"]
    print(f"ran {result['minutes']:.1f} min: {c['good images sent']} good + {c['bad images sent']} bad images, "
          f"{c['twists']} twists received ({c['moving twists']} moving)")
    print("events: " + ", ".join(f"{k[8:]} {v}" for k, v in sorted(c.items()) if k.startswith("events: ")))
    print(f"crashes                          {int(result['crashed'])}")
    print(f"non-zero twists while stopped    {c['non-zero twists while stopped']}")
    print(f"limit violations                 {c['limit violations']}"
          + (f" (worst excess {soak.worst_excess:.4g})" if c["limit violations"] else ""))
    print(f"twists while quietly disabled    {c['twists while quietly disabled']}")
    print(f"tracebacks in the node log       {result['tracebacks']}")
    print(f"node counters                    internal_errors {d.get('internal_errors', '?')}, images_rejected "
          f"{d.get('images_rejected', '?')}, instructions_rejected {d.get('instructions_rejected', '?')}, "
          f"actions_executed {d.get('actions_executed', '?')}, clock_jumps {d.get('clock_jumps', '?')}")
    print(f"e-stops not reported {c['e-stops not reported']}, resets refused {c['resets refused']}, "
          f"valid parameter changes refused {c['valid parameter changes refused']}, invalid ones rejected "
          f"{c['invalid parameter changes rejected']}, bad instructions rejected {c['bad instructions rejected']} "
          f"(not rejected {c['bad instructions not rejected']})")
    print(f"end of soak: SIGINT -> exit {shutdown['code']} after {shutdown['exit_s']:.3f} s, "
          f"final zero twist {'yes' if shutdown['final_zero'] else 'NO'}", flush=True)
    if not args.no_shutdown:
        print("shutdown (seconds from signal to exit, exit status, final zero twist):")
        for mode in ("wall", "sim_no_clock", "sim_clock"):
            for signum in (signal.SIGINT, signal.SIGTERM):
                r = shutdown_round(mode, signum, log_dir)
                print(f"  {mode:13s} {signal.Signals(signum).name:8s} {r['exit_s']:.3f} s  exit {r['code']}  "
                      f"final zero {'yes' if r['final_zero'] else 'NO'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
