"""magma_node ends on SIGINT and SIGTERM in every clock mode (wall clock, use_sim_time without a
/clock, use_sim_time with one) with exit status 0 after a final zero twist. It used to hang
without /clock (nothing woke the executor) until launch escalated to SIGKILL. The time to exit is
measured by bench/soak.py; here the deadline is only a generous bound for a loaded machine."""
from __future__ import annotations

import signal
import subprocess

import pytest
from node_support import NodeProcess, Probe, is_zero, rgb_image, topic_params, topics_under, wait_until
from safety_support import MOVE, SimClock

EXIT_DEADLINE_S = 20.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", ["wall", "sim_without_clock", "sim_with_clock"])
def test_signal_ends_the_node_after_a_final_zero_twist(console_script, tmp_path, mode, signum):
    name = f"sd_{mode}_{signum.name.lower()}"
    topics = topics_under(name)
    params = {"backend": "fixed", "fixed_action": MOVE, "enabled_on_start": True, "instruction": "shutdown test",
              "control_rate_hz": 0.5, "max_linear_accel": 100.0, "max_angular_accel": 100.0, **topic_params(topics)}
    if mode != "wall":
        params["use_sim_time"] = True
    node = NodeProcess(console_script("magma_node"), name, params, tmp_path)
    probe = Probe(name, topics)
    clock = SimClock(probe, start=50.0) if mode == "sim_with_clock" else None
    try:
        # ~/enable publishes a command at once: the node is up and its twists reach the probe
        assert probe.enable(True).success
        wait_until(lambda: probe.twists.items, 60, what=f"a twist; node log:\n{node.output()}")
        if mode != "sim_without_clock":  # moving when the signal comes (no ticks without a /clock)
            with probe.stream(rgb_image()):
                probe.wait_motion(60)
        received = len(probe.twists.items)
        node.proc.send_signal(signum)
        try:
            code = node.proc.wait(EXIT_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_DEADLINE_S} s after {signum.name}; log:\n{node.output()}")
        assert code == 0, node.output()
        wait_until(lambda: len(probe.twists.items) > received, 20, what="the final twist")
        assert is_zero(probe.twists.last()), "the last twist must be zero"
        assert "Traceback" not in node.output()
    finally:
        if clock is not None:
            clock.close()
        probe.close()
        node.stop()


def test_sigint_while_images_stream_leaves_no_exception_noise(console_script, tmp_path):
    """Ctrl-C lands while camera callbacks and the model run: the node ends with status 0 and its
    output holds neither a traceback nor Python's 'Exception ignored' report (from an exception
    raised inside a callback or finalizer of rclpy's)."""
    name = "sd_streaming"
    topics = topics_under(name)
    params = {"backend": "fixed", "fixed_action": MOVE, "enabled_on_start": True, "instruction": "stream test",
              **topic_params(topics)}
    node = NodeProcess(console_script("magma_node"), name, params, tmp_path)
    probe = Probe(name, topics)
    try:
        wait_until(lambda: probe.twists.items, 60, what=f"a twist; node log:\n{node.output()}")
        with probe.stream(rgb_image(640, 480), rate_hz=100.0):
            probe.wait_actions(5, 60)  # frames are arriving and being run through the model
            node.proc.send_signal(signal.SIGINT)
            try:
                code = node.proc.wait(EXIT_DEADLINE_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {EXIT_DEADLINE_S} s after SIGINT; log:\n{node.output()}")
        output = node.output()
        assert code == 0, output
        assert "Exception ignored" not in output and "Traceback" not in output, output
    finally:
        probe.close()
        node.stop()
