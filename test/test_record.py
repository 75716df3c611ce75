"""``magma-ros record`` as a separate process against real publishers over DDS on localhost."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from domains import spare_domain

from magma_ros.interface import DIAGNOSTICS, GRIPPER, IMAGE, NODE_ACTION, RELIABLE_QOS, TWIST

pytestmark = pytest.mark.ros

EXTRA = "/extra/note"  # a topic magma_node does not know
ACTION = [0.01, -0.02, 0.03, 0.1, -0.1, 0.2, 1.0]
# A domain of our own, so that nodes of other test modules cannot mix into the recordings.
DOMAIN = spare_domain(1)
ENV = {**os.environ, "ROS_DOMAIN_ID": str(DOMAIN)}


@pytest.fixture(scope="module")
def node_outputs():
    """A stand-in publishing magma_node's four output topics at 20 Hz, plus an extra String topic."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from geometry_msgs.msg import TwistStamped
    from std_msgs.msg import Float64, Float64MultiArray, String

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    node = rclpy.create_node("fake_magma_node", context=context)
    qos = RELIABLE_QOS.profile()
    pubs = {
        "twist": node.create_publisher(TwistStamped, TWIST.absolute, qos),
        "gripper": node.create_publisher(Float64, GRIPPER.absolute, qos),
        "action": node.create_publisher(Float64MultiArray, NODE_ACTION.absolute, qos),
        "diag": node.create_publisher(DiagnosticArray, DIAGNOSTICS.absolute, qos),
        "extra": node.create_publisher(String, EXTRA, qos),
    }
    stop = threading.Event()
    published = {"notes": 0}

    def publish() -> None:
        i = 0
        while not stop.is_set():
            twist = TwistStamped()
            twist.header.frame_id = "base_link"
            twist.twist.linear.x = 0.05
            pubs["twist"].publish(twist)
            pubs["gripper"].publish(Float64(data=0.25))
            pubs["action"].publish(Float64MultiArray(data=ACTION))
            pubs["diag"].publish(DiagnosticArray(status=[DiagnosticStatus(name="magma_node", message="ok")]))
            pubs["extra"].publish(String(data=f"note {i}"))
            i += 1
            published["notes"] = i
            stop.wait(0.05)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield SimpleNamespace(note_publisher=pubs["extra"], published=published)
    stop.set()
    thread.join()
    node.destroy_node()
    rclpy.shutdown(context=context)


def read_bag(path: Path) -> dict[str, list]:
    from rosbags.highlevel import AnyReader

    out: dict[str, list] = {}
    with AnyReader([path]) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, [])
        for conn, _, raw in reader.messages():
            out[conn.topic].append(reader.deserialize(raw, conn.msgtype))
    return out


def test_records_node_outputs_for_a_duration(node_outputs, tmp_path, console_script):
    out = tmp_path / "run"
    result = subprocess.run([console_script("magma-ros"), "record", "--out", str(out), "--duration", "4"],
                            capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stderr
    assert (out / "metadata.yaml").is_file() and list(out.glob("*.mcap"))
    msgs = read_bag(out)
    assert set(msgs) == {TWIST.absolute, GRIPPER.absolute, NODE_ACTION.absolute, DIAGNOSTICS.absolute}
    for topic, items in msgs.items():
        assert len(items) >= 5, (topic, len(items), result.stderr)
    assert msgs[GRIPPER.absolute][0].data == 0.25
    assert msgs[TWIST.absolute][0].twist.linear.x == pytest.approx(0.05)
    np.testing.assert_allclose(msgs[NODE_ACTION.absolute][-1].data, ACTION)
    assert msgs[DIAGNOSTICS.absolute][0].status[0].name == "magma_node"
    assert "recorded" in result.stderr and GRIPPER.absolute in result.stderr


def test_sigint_leaves_a_complete_bag_with_extra_topics(node_outputs, tmp_path, console_script):
    out = tmp_path / "run"
    proc = subprocess.Popen([console_script("magma-ros"), "record", "--out", str(out), "--storage", "sqlite3",
                             "--no-node-outputs", "--topic", EXTRA, "--topic", NODE_ACTION.absolute],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("*.db3")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        # the recorder has subscribed to the note topic; then let twenty more notes go out to it
        while node_outputs.note_publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert node_outputs.note_publisher.get_subscription_count() >= 1, "the recorder never subscribed /extra/note"
        wanted = node_outputs.published["notes"] + 20
        while node_outputs.published["notes"] < wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    msgs = read_bag(out)
    assert set(msgs) == {EXTRA, NODE_ACTION.absolute}
    assert len(msgs[EXTRA]) >= 5, err
    assert msgs[EXTRA][0].data.startswith("note ")


def test_unknown_topic_without_type_times_out(tmp_path, capsys):
    from magma_ros.cli import main

    code = main(["record", "--out", str(tmp_path / "x"), "--no-node-outputs", "--topic", "/nobody/publishes",
                 "--discovery-timeout", "1"])
    assert code == 2
    assert "/nobody/publishes: not seen in the ROS graph after 1 s" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_a_topic_without_publisher_is_named_and_recorded_from_when_one_appears(tmp_path, capsys):
    from magma_ros.cli import main

    out = tmp_path / "quiet"
    code = main(["record", "--out", str(out), "--no-node-outputs", "--topic", "/nobody/talks:std_msgs/msg/String",
                 "--discovery-timeout", "1", "--duration", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.startswith("no publisher on /nobody/talks after 1 s: recorded from when one appears\n"), err
    assert read_bag(out) == {"/nobody/talks": []}


def test_refuses_existing_output_and_bad_topic(tmp_path, capsys):
    from magma_ros.cli import main

    (tmp_path / "exists").mkdir()
    assert main(["record", "--out", str(tmp_path / "exists"), "--duration", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["record", "--out", str(tmp_path / "y"), "--topic", "relative/name"]) == 2
    assert "expected an absolute topic name" in capsys.readouterr().err


def test_a_namespace_moves_the_default_topics(tmp_path, console_script):
    """``--ros-args -r __ns:=/robot1`` records a magma_node running in /robot1 (issue 26): its twist,
    gripper and ~/action under /robot1, /diagnostics where it always is."""
    import rclpy
    from node_support import rgb_image, ros_value
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64MultiArray
    from waiting import wait_until

    namespace = "/robot1"
    params = {"robot": "bridge_orig", "backend": "fixed", "fixed_action": ACTION, "enabled_on_start": True,
              "instruction": "record me"}
    args = [console_script("magma_node"), "--ros-args", "-r", f"__ns:={namespace}"]
    for key, value in params.items():
        args += ["-p", f"{key}:={ros_value(value)}"]
    log = tmp_path / "magma_node.log"
    with open(log, "w") as log_file:
        node = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=ENV)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    camera = rclpy.create_node("namespaced_camera", context=context)
    actions: list = []
    camera.create_subscription(Float64MultiArray, f"{namespace}/{NODE_ACTION.name}", actions.append,
                               NODE_ACTION.qos.profile())
    image_pub = camera.create_publisher(Image, f"{namespace}/{IMAGE.name}", IMAGE.qos.profile())
    stop = threading.Event()

    def stream() -> None:
        image = rgb_image()
        while not stop.is_set():
            image.header.stamp = camera.get_clock().now().to_msg()
            image_pub.publish(image)
            stop.wait(0.1)

    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    streamer = threading.Thread(target=stream, daemon=True)
    spinner.start()
    streamer.start()
    out = tmp_path / "run_ns"
    try:
        wait_until(lambda: actions or node.poll() is not None, 90, what="the namespaced node's first action")
        assert node.poll() is None, log.read_text()
        result = subprocess.run([console_script("magma-ros"), "record", "--out", str(out), "--duration", "3",
                                 "--ros-args", "-r", f"__ns:={namespace}"],
                                capture_output=True, text=True, timeout=120, env=ENV)
    finally:
        stop.set()
        streamer.join()
        executor.shutdown()
        camera.destroy_node()
        rclpy.shutdown(context=context)
        node.send_signal(signal.SIGINT)
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    assert node.returncode == 0, log.read_text()
    assert result.returncode == 0, result.stderr
    msgs = read_bag(out)
    moved = {f"{namespace}/{topic.name}" for topic in (TWIST, GRIPPER, NODE_ACTION)}
    assert set(msgs) == moved | {DIAGNOSTICS.absolute}, result.stderr
    for topic in moved:
        assert len(msgs[topic]) >= 1, (topic, result.stderr)
    np.testing.assert_allclose(msgs[f"{namespace}/{NODE_ACTION.name}"][-1].data, ACTION)
    assert msgs[f"{namespace}/{GRIPPER.name}"][-1].data == 1.0
    assert msgs[DIAGNOSTICS.absolute], result.stderr  # 1 Hz: at least one in 3 s


def test_an_unknown_message_type_is_a_bag_error_naming_it():
    from magma_ros.eval.errors import BagError
    from magma_ros.eval.messages import message_class

    assert message_class("std_msgs/msg/Float64").__name__ == "Float64"
    with pytest.raises(BagError, match=r"message type no_such_msgs/msg/Thing: not installed for rclpy "
                                       r"\(no module no_such_msgs.msg with Thing\)"):
        message_class("no_such_msgs/msg/Thing")
