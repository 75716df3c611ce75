"""``magma_sim`` and ``magma_node`` as child processes of this interpreter, for the demo and the
end-to-end tests: start them (lockstep on simulated time by default), watch them, stop them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO


@dataclass
class NodeProcesses:
    """The two node processes and their log files."""

    sim: subprocess.Popen
    node: subprocess.Popen
    logs: list[TextIO]

    def check_alive(self) -> None:
        """Raise ``RuntimeError`` naming a process that has exited."""
        for name, proc in (("magma_sim", self.sim), ("magma_node", self.node)):
            code = proc.poll()
            if code is not None:
                raise RuntimeError(f"{name} exited with status {code} (see its log in the output directory)")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT both (magma_node publishes a final zero twist), then kill what does not exit."""
        for proc in (self.node, self.sim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in (self.node, self.sim):
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


def start_nodes(out_dir: Path, *, seed: int, node_params: dict[str, Any], lockstep: bool = True,
                control_rate_hz: float = 5.0) -> NodeProcesses:
    """Start ``magma_sim`` and ``magma_node`` with this interpreter; logs go to ``out_dir``. With
    ``lockstep`` the simulator waits for the node, which runs on simulated time, and takes one
    camera frame per control period (``control_rate_hz``, the node's robot profile's rate)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sim_log = open(out_dir / "magma_sim.log", "w", encoding="utf-8")
    node_log = open(out_dir / "magma_node.log", "w", encoding="utf-8")
    sim_args = [sys.executable, "-m", "magma_ros.sim.sim_main", "--ros-args", "-p", f"seed:={seed}"]
    if lockstep:
        sim_args += ["-p", "lockstep:=true", "-p", f"camera_rate_hz:={float(control_rate_hz)}"]
        node_params = {**node_params, "use_sim_time": True}
    sim = subprocess.Popen(sim_args, stdout=sim_log, stderr=subprocess.STDOUT, env=env)
    args = [sys.executable, "-m", "magma_ros.ros.node_main", "--ros-args"]
    for name, value in node_params.items():
        args += ["-p", f"{name}:={_param_text(value)}"]
    node = subprocess.Popen(args, stdout=node_log, stderr=subprocess.STDOUT, env=env)
    return NodeProcesses(sim=sim, node=node, logs=[sim_log, node_log])


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
