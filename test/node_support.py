"""Helpers for the magma_node tests: the node as a subprocess, a probe node in the test process,
and policy factories loaded by the node through ``-p backend:=node_support:<factory>``."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from waiting import wait_until

from magma_ros.actions import ActionDecoder
from magma_ros.interface import (
    ACTION,
    COMPRESSED_SUFFIX,
    DIAGNOSTICS,
    EE_POSE,
    ENABLE,
    ESTOP,
    GRIPPER,
    IMAGE,
    INSTRUCTION,
    RESET,
    TWIST,
    Service,
    Topic,
)
from magma_ros.policy.base import PolicyError, Prediction, check_image

TEST_DIR = Path(__file__).resolve().parent
MOVE_ACTION = (0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0)  # robot units per control step


# --- policies created inside the node process ---------------------------------------------------
class ScriptedPolicy:
    """Behaves as its instruction says: 'move', 'close', 'tokens', 'slow', 'nan', 'raise',
    'six ids', 'bad ids'. Lets one node process exercise every backend outcome."""

    vocab_size = 128000

    def __init__(self, profile) -> None:
        self.decoder = ActionDecoder(profile.stats)

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        check_image(image)
        word = instruction.split()[0]
        action = np.array(MOVE_ACTION)
        if word == "close":
            action[6] = 0.0
        elif word == "tokens":
            return Prediction(token_ids=self.decoder.encode(action), text="tokens")
        elif word == "slow":
            time.sleep(0.6)
        elif word == "nan":
            action[1] = math.nan
        elif word == "raise":
            raise PolicyError("endpoint unreachable (scripted)")
        elif word == "six":
            return Prediction(token_ids=np.arange(127800, 127806))
        elif word == "bad":
            return Prediction(token_ids=np.array([5, 6, 7, 8, 9, 10, 11]))
        return Prediction(action=action, text=word)

    def close(self) -> None:
        pass


def scripted(config, profile) -> ScriptedPolicy:
    """Factory for ``backend:=node_support:scripted``."""
    return ScriptedPolicy(profile)


# --- the node under test -------------------------------------------------------------------------
class NodeProcess:
    """``magma_node --ros-args ...`` as a subprocess with its output in a log file."""

    def __init__(self, script: str, name: str, params: dict[str, Any], log_dir: Path) -> None:
        self.name = name
        args = [script, "--ros-args", "-r", f"__node:={name}"]
        for key, value in params.items():
            args += ["-p", f"{key}:={ros_value(value)}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")]),
                   PYTHONUNBUFFERED="1")
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def ros_value(value: Any) -> str:
    """A Python value as a ``-p name:=value`` literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(repr(float(v)) for v in value) + "]"
    return str(value)


def run_node_expecting_exit(script: str, params: dict[str, Any], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run a node that must exit by itself (bad configuration)."""
    args = [script, "--ros-args"]
    for key, value in params.items():
        args += ["-p", f"{key}:={ros_value(value)}"]
    env = dict(os.environ, PYTHONPATH=str(TEST_DIR))
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)


# --- the probe: the test's side of the topics ---------------------------------------------------
class Received:
    """Messages of one topic with their arrival times (monotonic)."""

    def __init__(self) -> None:
        self.items: deque[tuple[float, Any]] = deque(maxlen=20000)

    def __call__(self, msg: Any) -> None:
        self.items.append((time.monotonic(), msg))

    def since(self, t: float) -> list[tuple[float, Any]]:
        return [(ts, m) for ts, m in list(self.items) if ts >= t]

    def last(self) -> Any:
        return self.items[-1][1] if self.items else None


def twist_values(msg) -> tuple[float, ...]:
    t = msg.twist
    return (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z)


def is_zero(msg) -> bool:
    return not any(twist_values(msg))


def stamp_s(msg) -> float:
    """A message's header stamp in seconds."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class Probe:
    """Publishes camera images, instructions, e-stops and poses to one node; records its outputs."""

    def __init__(self, node_name: str, topics: dict[str, str], compressed: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped, TwistStamped
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Bool, Float64, Float64MultiArray, String

        # a private context: nothing global is left initialized for other test modules
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.target = node_name
        self.node = rclpy.create_node(f"probe_{node_name}", context=self.context)
        n = self.node
        image_type, image_topic = (CompressedImage, topics["image"] + COMPRESSED_SUFFIX) if compressed else \
            (Image, topics["image"])
        self.image_pub = n.create_publisher(image_type, image_topic, IMAGE.qos.profile())
        self.instruction_pub = n.create_publisher(String, topics["instruction"], INSTRUCTION.qos.profile())
        self.estop_pub = n.create_publisher(Bool, topics["estop"], ESTOP.qos.profile())
        self.pose_pub = n.create_publisher(PoseStamped, topics.get("ee_pose", "/unused_pose"), EE_POSE.qos.profile())
        self.twists, self.grippers, self.actions, self.diagnostics = Received(), Received(), Received(), Received()
        n.create_subscription(TwistStamped, topics["twist"], self.twists, TWIST.qos.profile())
        n.create_subscription(Float64, topics["gripper"], self.grippers, GRIPPER.qos.profile())
        n.create_subscription(Float64MultiArray, private_name(node_name, ACTION), self.actions, ACTION.qos.profile())
        n.create_subscription(DiagnosticArray, DIAGNOSTICS.name, self._on_diagnostics, DIAGNOSTICS.qos.profile())
        self._msg_types = {"String": String, "Bool": Bool, "PoseStamped": PoseStamped}
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()
        self.image_clock: Callable[[], float] | None = None  # seconds that stamp streamed images; None = ROS time

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name == f"{self.target}: safety":
                self.diagnostics((status, {kv.key: kv.value for kv in status.values}))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.shutdown()

    # inputs
    def instruct(self, text: str) -> None:
        self.instruction_pub.publish(self._msg_types["String"](data=text))

    def estop(self, value: bool) -> None:
        self.estop_pub.publish(self._msg_types["Bool"](data=value))

    def pose(self, xyz: tuple[float, float, float], frame: str = "base_link") -> None:
        msg = self._msg_types["PoseStamped"]()
        msg.header.frame_id = frame
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = xyz
        msg.pose.orientation.w = 1.0
        self.pose_pub.publish(msg)

    def stamp_now(self):
        """A stamp for now on the camera's clock: ``image_clock`` if set (a simulated clock), else ROS time."""
        if self.image_clock is None:
            return self.node.get_clock().now().to_msg()
        from builtin_interfaces.msg import Time

        ns = round(self.image_clock() * 1e9)
        return Time(sec=ns // 10**9, nanosec=ns % 10**9)

    @contextmanager
    def stream(self, image_msg: Any, rate_hz: float = 20.0, pose: Callable[[], Any] | None = None,
               stamps: Iterator[Any] | None = None) -> Iterator[None]:
        """Publish ``image_msg`` (and a pose from ``pose()``) at ``rate_hz`` while inside the block,
        stamped now (``stamp_now``) or with the next of ``stamps`` (builtin_interfaces/Time)."""
        stop = threading.Event()

        def run() -> None:
            while not stop.is_set():
                image_msg.header.stamp = self.stamp_now() if stamps is None else next(stamps)
                self.image_pub.publish(image_msg)
                if pose is not None:
                    self.pose(pose())
                stop.wait(1.0 / rate_hz)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        self.last_image_time = time.monotonic()

    # state
    def state(self) -> dict[str, str]:
        last = self.diagnostics.last()
        return last[1] if last else {}

    def wait_state(self, state: str, timeout: float = 20.0) -> dict[str, str]:
        return wait_until(lambda: self.state() if self.state().get("state") == state else None, timeout,
                          what=f"diagnostics state {state!r} (last: {self.state()})")

    def wait_motion(self, timeout: float = 20.0, since: float | None = None):
        """The first non-zero twist that arrives from now (or from ``since``, monotonic)."""
        start = time.monotonic() if since is None else since
        return wait_until(lambda: next((m for _, m in self.twists.since(start) if not is_zero(m)), None), timeout,
                          what="a non-zero twist")

    def wait_steady_motion(self, timeout: float = 20.0, since: float | None = None):
        """A non-zero twist equal to the one before it (past the acceleration ramp at the start of
        a hold), arrived from now (or from ``since``, monotonic)."""
        start = time.monotonic() if since is None else since

        def steady():
            moving = [m for _, m in self.twists.since(start) if not is_zero(m)]
            return next((b for a, b in zip(moving, moving[1:]) if np.allclose(twist_values(a), twist_values(b))),
                        None)
        return wait_until(steady, timeout, what="two equal non-zero twists in a row")

    def wait_twists(self, count: int, since: float, timeout: float = 20.0) -> list:
        """The first ``count`` twists that arrived since ``since`` (monotonic), once they have."""
        items = wait_until(lambda: [m for _, m in self.twists.since(since)][:count] if
                           len(self.twists.since(since)) >= count else None, timeout, what=f"{count} twists")
        return items

    def wait_actions(self, count: int, timeout: float = 20.0) -> list[float]:
        """Arrival times of the next ``count`` messages on ~/action."""
        seen = len(self.actions.items)
        wait_until(lambda: len(self.actions.items) >= seen + count, timeout, what=f"{count} more actions")
        return [t for t, _ in list(self.actions.items)[seen:seen + count]]

    def wait_stop(self, timeout: float = 20.0, run: int = 5) -> float:
        """Wait until ``run`` consecutive zero twists arrived; returns the first one's arrival time."""
        return self.wait_stop_message(timeout, run)[0]

    def wait_stop_message(self, timeout: float = 20.0, run: int = 5) -> tuple[float, Any]:
        """Like ``wait_stop``; returns the first zero twist's arrival time and message."""
        start = time.monotonic()

        def stopped():
            items = self.twists.since(start)
            for i in range(len(items) - run + 1):
                if all(is_zero(m) for _, m in items[i:i + run]):
                    return items[i]
            return None
        return wait_until(stopped, timeout, what=f"{run} consecutive zero twists")

    def assert_still(self, since: float, count: int = 10) -> None:
        """The next ``count`` twists after ``since`` (monotonic) are all explicit zeros."""
        window = self.wait_twists(count, since)
        assert all(is_zero(m) for m in window), [twist_values(m) for m in window]

    # services
    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {name} not available")
            future = client.call_async(request)
            wait_until(future.done, timeout, what=f"reply from {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def enable(self, value: bool):
        from std_srvs.srv import SetBool

        return self.call(SetBool, private_name(self.target, ENABLE), SetBool.Request(data=value))

    def reset(self):
        from std_srvs.srv import Trigger

        return self.call(Trigger, private_name(self.target, RESET), Trigger.Request())

    def set_params(self, **values: Any):
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return self.call(SetParameters, f"/{self.target}/set_parameters", request).results


def rgb_image(width: int = 64, height: int = 48, encoding: str = "rgb8"):
    """A sensor_msgs/Image with a colour gradient in ``encoding``."""
    from sensor_msgs.msg import Image

    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(encoding, 3)
    pixels = (np.arange(width * height * channels) % 251).astype(np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels)
    msg.data = pixels.tobytes()
    return msg


def jpeg_image(width: int = 64, height: int = 48):
    """A sensor_msgs/CompressedImage holding a JPEG."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, data = cv2.imencode(".jpg", np.full((height, width, 3), 120, np.uint8))
    assert ok
    return CompressedImage(format="jpeg", data=data.tobytes())


def topics_under(prefix: str, *, ee_pose: bool = False) -> dict[str, str]:
    """The node's topics moved under ``/prefix`` (keys image/instruction/estop/twist/gripper, and
    ee_pose if asked), so that each test module has topics of its own."""
    topics = {"image": IMAGE, "instruction": INSTRUCTION, "estop": ESTOP, "twist": TWIST, "gripper": GRIPPER}
    if ee_pose:
        topics["ee_pose"] = EE_POSE
    return {key: f"/{prefix}/{topic.name}" for key, topic in topics.items()}


def private_name(node_name: str, entry: Topic | Service) -> str:
    """A node's private ``~/name`` topic or service seen from outside: ``/node_name/name``."""
    return f"/{node_name}/{entry.name.removeprefix('~/')}"


@contextmanager
def running_node(console_script: Callable[[str], str], name: str, params: dict[str, Any], log_dir: Path,
                 topics: dict[str, str], compressed: bool = False) -> Iterator[tuple[NodeProcess, "Probe"]]:
    """magma_node ``name`` as its own process and a Probe on ``topics``, from its first twist on; on
    leaving, the probe closes and the node must exit with status 0. A failure inside the block is
    the one reported (a bad exit status as well is added to it as a note)."""
    proc = NodeProcess(console_script("magma_node"), name, params, log_dir)
    probe = Probe(name, topics, compressed=compressed)
    try:
        wait_until(lambda: probe.twists.items, 90, what=f"first twist; node log:\n{proc.output()}")
        yield proc, probe
    except BaseException as exc:
        probe.close()
        code = proc.stop()
        if code != 0 and hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(f"magma_node {name} also exited with status {code}; its log:\n{proc.output()}")
        raise
    probe.close()
    code = proc.stop()
    assert code == 0, proc.output()


def topic_params(topics: dict[str, str]) -> dict[str, str]:
    """Node parameters that move its topics to ``topics`` (keys image/instruction/estop/twist/gripper)."""
    return {f"{key}_topic": name for key, name in topics.items()}


def assert_node_publishes(console_script: Callable[[str], str], node_name: str, params: dict[str, Any],
                          topics: dict[str, str], tmp_path: Path, image, expected) -> None:
    """Run magma_node with ``params``, stream ``image`` and check that ``~/action`` carries ``expected``
    (at least three decoded actions), that twists come out, and that the node exits cleanly."""
    params = {**params, **topic_params(topics)}
    with running_node(console_script, node_name, params, tmp_path, topics) as (node, probe):
        with probe.stream(image, rate_hz=10.0):
            wait_until(lambda: len(probe.actions.items) >= 3, 60,
                       what=f"three decoded actions on ~/action; node log:\n{node.output()}")
        published = [np.array(msg.data) for _, msg in list(probe.actions.items)]
        for action in published:
            assert np.allclose(action, expected), (action, expected)
        assert probe.twists.items, "no twist commands"
