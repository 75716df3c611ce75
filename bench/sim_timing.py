"""magma_sim's timing figures that the tests no longer assert (they depend on the CPU): the real-time
factor it reaches without lockstep, how fast it stops on SIGINT/SIGTERM in each mode, and how many
wall-clock seconds a lockstep demo episode takes per simulated second. Prints figures, asserts nothing.

    python bench/sim_timing.py
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
SIM = [sys.executable, "-m", "magma_ros.sim.sim_main", "--ros-args"]


def start_sim(*params: str, log: Path) -> subprocess.Popen:
    """magma_sim with ``params``, once it has said it is ready."""
    out = open(log, "w")
    proc = subprocess.Popen([*SIM, *params], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "magma_sim ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def real_time_factor(rtf: float, seconds: float, log: Path) -> float:
    """Simulated seconds per wall-clock second over ``seconds``, read from /sim/status."""
    import rclpy
    from std_msgs.msg import String

    from magma_ros.interface import SIM_STATUS

    proc = start_sim("-p", f"real_time_factor:={rtf}", "-p", "camera_rate_hz:=2.0", log=log)
    rclpy.init()
    node = rclpy.create_node("rtf_probe")
    seen: list[tuple[float, float]] = []
    node.create_subscription(String, SIM_STATUS.absolute,
                             lambda m: seen.append((time.monotonic(), json.loads(m.data)["time"])),
                             SIM_STATUS.qos.profile())
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and (not seen or seen[-1][0] - seen[0][0] < seconds):
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    return (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])


def stop_time(params: list[str], signum: int, log: Path) -> tuple[float, int]:
    """Seconds from the signal to the exit, and the exit status."""
    proc = start_sim(*params, log=log)
    time.sleep(1.0)
    start = time.monotonic()
    proc.send_signal(signum)
    code = proc.wait(60)
    return time.monotonic() - start, code


def main() -> int:
    print(f"magma_sim timing: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sim.log"
        for rtf in (1.0, 4.0):
            print(f"  real_time_factor {rtf:g} (camera 2 Hz): reached {real_time_factor(rtf, 3.0, log):.2f}")
        for params in (["-p", "lockstep:=true"], ["-p", "lockstep:=false"],
                       ["-p", "use_sim_time:=true", "-p", "real_time_factor:=2.0"]):
            for signum in (signal.SIGINT, signal.SIGTERM):
                seconds, code = stop_time(params, signum, log)
                print(f"  stop on {signal.Signals(signum).name:7s} with {' '.join(params[1::2]):45s}: "
                      f"{1000 * seconds:4.0f} ms, exit {code}")
        out = Path(tmp) / "demo"
        demo = subprocess.run([sys.executable, "-m", "magma_ros.demo", "--out", str(out)], capture_output=True,
                              text=True, timeout=900)
        if demo.returncode not in (0, 1):
            print(f"  demo failed: {demo.stderr.strip()}")
            return 1
        for ep in json.loads((out / "summary.json").read_text())["episodes"]:
            print(f"  lockstep demo, seed {ep['seed']}: {ep['steps']} steps, {ep['duration_s']:.2f} s simulated in "
                  f"{ep['wall_s']:.1f} s wall ({ep['wall_s'] / max(ep['duration_s'], 1e-9):.1f} s per simulated s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
