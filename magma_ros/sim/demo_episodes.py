"""The closed loop over ROS 2: ``magma_sim`` and ``magma_node`` as processes, episodes watched from here.

Starts both nodes (by default in lockstep on simulated time: ``magma_sim -p lockstep:=true``,
``magma_node -p use_sim_time:=true``), sends the instruction, follows the episode on the simulator's
status, the node's diagnostics and commands, and records camera frames and commands for the report.
Episode times are simulated seconds, so with lockstep an episode's outcome does not depend on the
CPU. Used by ``python -m magma_ros.demo`` (``make demo``) and by the end-to-end tests.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .episode_log import EpisodeLog
from .monitor import Monitor
from .processes import NodeProcesses, start_nodes

Progress = Callable[[str], None]


def run_episodes(out_dir: Path, episodes: Sequence[tuple[int, str]], node_params: dict[str, Any], *,
                 episode_timeout: float, lockstep: bool = True, control_rate_hz: float = 5.0,
                 startup_timeout: float = 120.0, progress: Progress = print) -> list[EpisodeLog]:
    """Start the nodes, run the (seed, instruction) episodes in turn (``episode_timeout`` in
    simulated seconds), stop the nodes."""
    procs = start_nodes(out_dir, seed=episodes[0][0], node_params=node_params, lockstep=lockstep,
                        control_rate_hz=control_rate_hz)
    monitor = None
    try:
        monitor = Monitor()
        progress("waiting for magma_sim and magma_node ...")
        wait_until_ready(monitor, procs, startup_timeout)
        logs = []
        for seed, instruction in episodes:
            progress(f"episode seed {seed}: {instruction!r}")
            logs.append(run_episode(monitor, seed, instruction, episode_timeout, procs.check_alive, progress))
            progress(f"episode seed {seed}: {'SUCCESS' if logs[-1].success else 'FAILURE'} after "
                     f"{logs[-1].steps} steps, {logs[-1].duration_s:.2f} s simulated ({logs[-1].wall_s:.1f} s wall)")
        return logs
    finally:
        procs.stop()
        if monitor is not None:
            monitor.close()


def wait_until_ready(monitor: Monitor, procs: NodeProcesses, timeout: float) -> None:
    """Wait for the simulator's status and the node's diagnostics (it has seen images)."""
    ready = monitor.spin_until(lambda: monitor.status is not None and monitor.safety.get("state") not in
                               (None, "no_image"), timeout, procs.check_alive)
    if not ready:
        raise RuntimeError(f"nodes not ready after {timeout:.0f} s "
                           f"(sim status {'seen' if monitor.status else 'missing'}, "
                           f"node state {monitor.safety.get('state', 'missing')})")


def run_episode(monitor: Monitor, seed: int, instruction: str, timeout: float, check: Callable[[], None],
                progress: Progress) -> EpisodeLog:
    """Reset the sim with ``seed`` under ``instruction``, follow until success or ``timeout``
    simulated seconds. A new instruction is sent while the simulator holds still after a first
    reset (no camera frames, so no answer of magma_node is cut short by it), then the scene is
    reset again: the episode starts from the same state of both nodes every time."""
    if instruction != monitor.instruction:
        monitor.reset(seed, check)
        monitor.send_instruction(instruction, check)
    start = monitor.reset(seed, check)
    ep = EpisodeLog(seed=seed, instruction=instruction)
    episode = start["episode"]
    wall_start = time.monotonic()
    monitor.record(ep)

    def ours() -> dict[str, Any]:
        s = monitor.status or {}
        return s if s.get("episode") == episode and s.get("instruction") == instruction else {}

    def report() -> None:
        state = monitor.safety.get("state", "?")
        if not ep.safety_states or ep.safety_states[-1] != state:
            ep.safety_states.append(state)
        dist = ours().get("distance")
        lin = monitor.twist[0]
        progress(f"t={ours().get('time', 0.0):5.1f}s  step {ours().get('actions', 0):3d}  distance "
                 f"{'   ?  ' if dist is None else f'{100 * dist:5.1f} cm'}  safety {state:<14} "
                 f"twist [{lin[0]:+.3f} {lin[1]:+.3f} {lin[2]:+.3f}] m/s")

    def over() -> bool:
        return bool(ours().get("success")) or ours().get("time", 0.0) >= timeout

    wall_limit = 60.0 + 20.0 * timeout
    if not monitor.spin_until(over, wall_limit, check, every=report):
        raise RuntimeError(f"episode seed {seed}: {timeout:g} simulated seconds did not pass within "
                           f"{wall_limit:.0f} s of wall-clock time (see magma_sim.log)")
    report()
    monitor.record(None)
    final = ours()
    ep.success = bool(final.get("success"))
    ep.steps = int(final.get("actions", 0))
    ep.duration_s = float(final.get("time", 0.0))
    ep.final_distance = final.get("distance")
    ep.lockstep_timeouts = int(final.get("lockstep_timeouts", 0)) - int(start.get("lockstep_timeouts", 0))
    ep.wall_s = time.monotonic() - wall_start
    return ep
