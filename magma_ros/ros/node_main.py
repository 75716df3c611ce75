"""``magma_node`` console script: ``magma_node --ros-args -p robot:=bridge_orig -p backend:=fixed ...``."""
from __future__ import annotations

import signal
import sys
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import rclpy
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from ..options import parameter_help, wants_help
from ..policy.base import PolicyError
from ..rcl_startup import RosStartupError, init_rclpy, node_startup

if TYPE_CHECKING:
    from .managed_node import LifecycleMagmaNode

EXECUTOR_THREADS = 3  # inputs, services, the publish timer with use_sim_time (inference and, on
#                       the monotonic clock, publishing have threads of their own)
# How long a thread waiting for the GIL lets the holder run Python code before asking for it
# (CPython's default: 5 ms). The publish thread wakes every 20 ms; late ticks behind the image
# take + callback chain came at up to ~5 ms (bench/node_latency.py, publish jitter).
GIL_SWITCH_INTERVAL_S = 0.001
# The main thread spins in slices this long, so that a signal is handled within one slice even when
# nothing wakes the executor (use_sim_time without /clock: no timer ever fires).
SPIN_SLICE_S = 0.1


def configure_process() -> None:
    """Process-wide settings of a magma_node process (bench/node_latency.py applies them too)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def main(args: Sequence[str] | None = None) -> int:
    """Run the node until Ctrl-C or SIGTERM (exit 0, after a final zero twist); bad parameters
    exit 2 and a backend that cannot start exits 1, each with one line on stderr."""
    argv = list(args) if args is not None else sys.argv
    if wants_help(argv):
        print(_help())
        return 0
    # Our own signal handling: the context must stay valid long enough to publish a final zero twist.
    # Until the node runs, SIGINT and SIGTERM raise KeyboardInterrupt (nothing was commanded yet).
    # SIGINT also when started with it ignored (a shell's background job)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    configure_process()
    try:
        init_rclpy(argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            return _run()
        finally:
            if rclpy.ok():
                rclpy.shutdown()
    except KeyboardInterrupt:  # stopped while starting up: nothing was commanded yet
        return 0
    except RosStartupError as exc:  # rcl rejected the --ros-args
        print(f"magma_node: error: {exc}", file=sys.stderr)
        return 2


def _run() -> int:
    from .managed_node import LifecycleMagmaNode  # imported late: rclpy must be initialised

    try:
        with node_startup():
            node = LifecycleMagmaNode()
    except (ValueError, InvalidParameterValueException, RosStartupError) as exc:
        print(f"magma_node: error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"magma_node: backend error: {exc}", file=sys.stderr)
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    stop = node.finished  # also set by a managed node's shutdown transition
    try:
        executor.add_node(node)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        _spin(executor, node, stop)
    except KeyboardInterrupt:
        pass
    finally:
        node.close()  # final zero twist
        executor.shutdown()
    return 0


def _spin(executor: MultiThreadedExecutor, node: "LifecycleMagmaNode", stop: threading.Event) -> None:
    """Run callbacks until ``stop`` is set or the context shuts down. An exception that reaches
    the executor (the node's callbacks are guarded; rclpy's own are not) faults the node but does
    not end it."""
    while not stop.is_set() and node.context.ok():
        try:
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
        except ExternalShutdownException:
            return
        except Exception as exc:  # noqa: BLE001 - reported: logged, counted, robot stopped
            node.errors.report("the executor", exc)


def _help() -> str:
    from ..policy.config import BACKEND_OPTIONS
    from .settings import NODE_PARAMETERS

    params = NODE_PARAMETERS + tuple(replace(o, read_only=True) for o in BACKEND_OPTIONS)
    return parameter_help(
        "magma_node", "Camera + instruction in, safe TwistStamped and gripper commands out (starts disabled: "
        "call ~/enable). Exit status: 0 on Ctrl-C/SIGTERM, 2 for bad parameters, 1 if the backend cannot start.",
        params, 'magma_node --ros-args -p robot:=bridge_orig -p backend:=fixed '
                '-p "fixed_action:=[0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]" -p instruction:="axis check"')


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
