"""magma_node latency with a backend that sleeps a fixed time (no assertions; prints figures).

(a) image arrival -> command publish, excluding the model, for 640x480 rgb8 images:
    - in the node: image callback entry -> TwistStamped published, minus policy.predict time;
    - end to end: image published by another node -> first moving TwistStamped received,
      minus policy.predict time (adds DDS transport of the 900 kB image and of the twist).
(b) publish-timer jitter at 50 Hz while inference runs on a stream of images (node disabled, so
    only the timer publishes): |interval - 20 ms| between timer callbacks in the node and between
    twists at a subscriber.

    python bench/node_latency.py [--samples 100] [--model-s 0.05]
"""
from __future__ import annotations

import argparse
import os
import sys
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

IMAGE_TOPIC, TWIST_TOPIC = f"/bench/{IMAGE.name}", f"/bench/{TWIST.name}"  # the node's, moved under /bench


class SleepPolicy:
    """A model that takes ``seconds`` and returns a small constant action."""

    vocab_size = 128000

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        time.sleep(self.seconds)
        return Prediction(action=np.array([0.002, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))

    def close(self) -> None:
        pass


def percentiles(values_s, label: str) -> str:
    ms = 1000.0 * np.asarray(list(values_s))
    return (f"{label:58s} n={ms.size:4d}  p50={np.percentile(ms, 50):7.3f} ms  p99={np.percentile(ms, 99):7.3f} ms"
            f"  max={ms.max():7.3f} ms")


def image_msg(width: int = 640, height: int = 480) -> Image:
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.data = np.random.default_rng(0).integers(0, 255, height * width * 3, dtype=np.uint8).tobytes()
    return msg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100, help="images for (a)")
    parser.add_argument("--model-s", type=float, default=0.05, help="seconds the fake model sleeps")
    parser.add_argument("--jitter-s", type=float, default=8.0, help="seconds of streaming for (b)")
    args = parser.parse_args()

    configure_process()  # as the magma_node console script (GIL switch interval)
    rclpy.init()
    policy = SleepPolicy(args.model_s)
    control_rate = 10.0
    node = MagmaNode(policy, parameter_overrides=[
        Parameter("image_topic", value=IMAGE_TOPIC), Parameter("twist_topic", value=TWIST_TOPIC),
        Parameter("enabled_on_start", value=True), Parameter("instruction", value="bench"),
        Parameter("control_rate_hz", value=control_rate), Parameter("max_linear_accel", value=1000.0),
        Parameter("image_timeout_s", value=5.0)])
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()

    probe = rclpy.create_node("bench_probe")
    pub = probe.create_publisher(Image, IMAGE_TOPIC, IMAGE.qos.profile())
    received: list[tuple[float, bool]] = []
    probe.create_subscription(TwistStamped, TWIST_TOPIC,
                              lambda m: received.append((time.perf_counter(), m.twist.linear.x != 0.0)),
                              TWIST.qos.profile())
    probe_exec = SingleThreadedExecutor()
    probe_exec.add_node(probe)
    threading.Thread(target=probe_exec.spin, daemon=True).start()
    while pub.get_subscription_count() == 0 or not received:
        time.sleep(0.05)
    msg = image_msg()

    # (a) one image at a time, each after the previous action's hold has ended
    end_to_end = []
    hold = 1.0 / control_rate
    for _ in range(args.samples):
        time.sleep(hold + 0.02)
        n_inference = len(node.stats.inference_s)
        start = time.perf_counter()
        msg.header.stamp = probe.get_clock().now().to_msg()  # unstamped frames are ignored
        pub.publish(msg)
        deadline = start + 5.0
        moving = None
        while moving is None and time.perf_counter() < deadline:
            moving = next((t for t, m in list(received) if t > start and m), None)
            time.sleep(0.0005)
        if moving is None or len(node.stats.inference_s) == n_inference:
            continue
        end_to_end.append(moving - start - node.stats.inference_s[-1])
    in_node = list(node.stats.overhead_s)

    # (b) timer jitter while the model runs on a 30 Hz image stream; disabled, so that only the
    # timer publishes (the model still runs: ~/action is a dry run while disabled)
    node.supervisor.set_enabled(False)
    time.sleep(0.5)
    node.stats.tick_times.clear()
    received.clear()
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            msg.header.stamp = probe.get_clock().now().to_msg()
            pub.publish(msg)
            stop.wait(1 / 30)

    streamer = threading.Thread(target=stream)
    streamer.start()
    time.sleep(args.jitter_s)
    stop.set()
    streamer.join()
    period = 1.0 / 50.0
    ticks = np.diff(np.array(node.stats.tick_times))
    arrivals = np.diff(np.array([t for t, _ in received]))
    predictions = int(node.stats.counters["predictions"])
    dropped = node.core.worker.dropped

    print(f"magma_node latency: 640x480 rgb8, model sleeps {1000 * args.model_s:.0f} ms, control {control_rate:g} Hz, "
          f"publish 50 Hz, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"GIL switch interval {1000 * sys.getswitchinterval():g} ms")
    print(percentiles(in_node, "(a) image callback -> twist published, minus model"))
    print(percentiles(end_to_end, "(a) image published -> twist received, minus model"))
    print(percentiles(np.abs(ticks - period), "(b) timer jitter |interval - 20 ms| in the node"))
    print(percentiles(np.abs(arrivals - period), "(b) twist inter-arrival jitter at a subscriber"))
    print(f"    predictions {predictions}, frames dropped {dropped} (30 Hz images, {control_rate:g} Hz inference)")

    node.close()
    probe_exec.shutdown()
    executor.shutdown()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
