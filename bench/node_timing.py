"""magma_node's timing figures that the process tests no longer assert (they depend on the CPU):
publish rate, messages per held action, stop delay after the last image, and the largest gap
between commands while a slow model runs. Prints figures, asserts nothing.

    python bench/node_timing.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from magma_ros.interface import IMAGE, TWIST
from magma_ros.policy.base import Prediction
from magma_ros.ros.node import MagmaNode
from magma_ros.ros.node_main import configure_process

IMAGE_TOPIC, TWIST_TOPIC = f"/timing/{IMAGE.name}", f"/timing/{TWIST.name}"  # the node's, moved under /timing

ACTION = np.array([0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0])


class PacedPolicy:
    """A constant action after ``seconds`` of 'inference'."""

    vocab_size = 128000

    def __init__(self) -> None:
        self.seconds = 0.0

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        time.sleep(self.seconds)
        return Prediction(action=ACTION)

    def close(self) -> None:
        pass


class Bench:
    """The node in this process (as the console script runs it) and a probe streaming images."""

    def __init__(self) -> None:
        configure_process()
        rclpy.init()
        self.policy = PacedPolicy()
        self.node = MagmaNode(self.policy, parameter_overrides=[
            Parameter("image_topic", value=IMAGE_TOPIC), Parameter("twist_topic", value=TWIST_TOPIC),
            Parameter("enabled_on_start", value=True), Parameter("instruction", value="timing"),
            Parameter("max_linear_accel", value=100.0), Parameter("max_angular_accel", value=100.0)])
        self.executor = MultiThreadedExecutor(num_threads=3)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self.spinner.start()
        self.probe = rclpy.create_node("timing_probe")
        self.pub = self.probe.create_publisher(Image, IMAGE_TOPIC, IMAGE.qos.profile())
        self.twists: list[tuple[float, bool]] = []
        self.probe.create_subscription(TwistStamped, TWIST_TOPIC, self._on_twist, TWIST.qos.profile())
        self.probe_exec = SingleThreadedExecutor()
        self.probe_exec.add_node(self.probe)
        self.probe_spinner = threading.Thread(target=self.probe_exec.spin, daemon=True)
        self.probe_spinner.start()
        self.image = Image(height=48, width=64, encoding="rgb8", step=192, data=bytes(64 * 48 * 3))
        while self.pub.get_subscription_count() == 0 or not self.twists:
            time.sleep(0.05)

    def _on_twist(self, msg: TwistStamped) -> None:
        self.twists.append((time.monotonic(), any((msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z))))

    def stream(self, seconds: float, rate_hz: float) -> float:
        """Publish images for ``seconds``; returns when the last one was published."""
        end = time.monotonic() + seconds
        last = time.monotonic()
        while time.monotonic() < end:
            self.image.header.stamp = self.probe.get_clock().now().to_msg()  # unstamped frames are ignored
            self.pub.publish(self.image)
            last = time.monotonic()
            time.sleep(1.0 / rate_hz)
        return last

    def configure(self, **values: float) -> None:
        self.node.set_parameters([Parameter(k, value=v) for k, v in values.items()])

    def close(self) -> None:
        self.executor.shutdown()
        self.probe_exec.shutdown()
        self.spinner.join(5)
        self.probe_spinner.join(5)
        self.node.close()
        self.probe.destroy_node()
        rclpy.shutdown()


def bursts(samples: list[tuple[float, bool]]) -> list[int]:
    runs, current = [], 0
    for _, moving in samples:
        if moving:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    args = parser.parse_args()
    b = Bench()
    try:
        print(f"magma_node timing: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        start = time.monotonic()
        b.stream(args.seconds, 20.0)
        window = [t for t, _ in b.twists if t >= start + 0.5]
        print(f"  publish rate (publish_rate_hz 50), images at 20 Hz: "
              f"{(len(window) - 1) / (window[-1] - window[0]):.1f} Hz")

        b.configure(control_rate_hz=5.0, image_timeout_s=2.0)
        time.sleep(0.5)
        start = time.monotonic()
        b.stream(args.seconds + 1.0, 1.0)
        runs = bursts([s for s in b.twists if s[0] >= start])
        print(f"  moving commands per held action (0.2 s at 50 Hz = 10, plus the immediate one): {runs}")

        b.configure(control_rate_hz=1.0, image_timeout_s=0.2)
        time.sleep(2.5)
        delays = []
        for _ in range(3):
            start = time.monotonic()
            last = start
            while not any(m for t, m in b.twists if t > start) and time.monotonic() < start + 10:
                b.image.header.stamp = b.probe.get_clock().now().to_msg()  # a new frame, not a repeat
                b.pub.publish(b.image)  # until a fresh action moves the arm: it is held for 1 s from then
                last = time.monotonic()
                time.sleep(0.05)
            time.sleep(2.5)  # the hold ends and the next action is allowed (control period 1 s)
            stop = next((t for t, moving in b.twists if t > last and not moving), None)
            if stop is not None:
                delays.append(stop - last)
        print(f"  stop after the last image (image_timeout_s 0.2, action held 1 s): "
              f"{', '.join(f'{1000 * d:.0f} ms' for d in delays)}")

        b.configure(control_rate_hz=0.0, image_timeout_s=0.5)
        b.policy.seconds = 0.6
        start = time.monotonic()
        b.stream(args.seconds, 20.0)
        window = [t for t, _ in b.twists if t >= start + 0.3]
        gaps = np.diff(window)
        print(f"  model taking 0.6 s per prediction: {len(window)} commands in {window[-1] - window[0]:.1f} s, "
              f"largest gap {1000 * gaps.max():.0f} ms, dropped frames {b.node.core.worker.dropped}")
    finally:
        b.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
