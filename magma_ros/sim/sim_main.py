"""``magma_sim``: the simulated Panda as a ROS 2 node (PyBullet, headless).

Subscribes the node's commands and executes them, publishes what a real arm's drivers would:

- in:  ``servo_node/delta_twist_cmds`` geometry_msgs/TwistStamped (``panda_link0``, m/s and rad/s),
       ``magma/gripper_command`` std_msgs/Float64 (1.0 open, 0.0 closed),
       ``magma/instruction`` std_msgs/String (the task whose distance ``sim/status`` reports),
       ``sim/reset`` std_msgs/Int64 (a new episode with this seed),
       ``magma_node/action`` std_msgs/Float64MultiArray (the controller's decoded actions: counted,
       and in lockstep its reply to a camera frame)
- out: ``camera/image_raw`` sensor_msgs/Image (rgb8, 256 x 256), ``sim/ee_pose`` PoseStamped,
       ``joint_states`` JointState, ``sim/status`` std_msgs/String (JSON: seed, time, distance,
       success), ``/clock`` rosgraph_msgs/Clock (simulated time)

Topic names are relative (``/clock`` aside): a namespace moves the whole simulated arm.

A twist is executed until the next one or until its stamp is ``command_timeout_s`` old (then the
arm stops); older twists are ignored. Twists in another frame than the base frame are rejected and
stop the arm. With ``lockstep`` the simulator advances one tick (1/48 s) only after the controller
has had its turn: a twist stamped with that tick's time, and after a camera frame its reply.
"""
from __future__ import annotations

import signal
import sys

from ..options import parameter_help, wants_help
from ..rcl_startup import RosStartupError, init_rclpy, node_startup
from .parameters import SIM_PARAMETERS


class _StopRequest:
    """SIGINT/SIGTERM: raise while starting up, afterwards only ask the loop to end."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupt = True

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the simulator node until Ctrl-C or SIGTERM (exit 0); bad parameters exit 2 with one line."""
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    node = None
    try:
        argv = list(argv) if argv is not None else sys.argv
        if wants_help(argv):
            print(parameter_help("magma_sim", (__doc__ or "").strip(), SIM_PARAMETERS,
                                 "magma_sim --ros-args -p seed:=3 -p instruction:='reach the red cube'"))
            return 0
        from rclpy.exceptions import InvalidParameterValueException
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from .node import SimNode
        from .stepping import run

        init_rclpy(argv, signal_handler_options=SignalHandlerOptions.NO)
        try:
            with node_startup():
                node = SimNode()
        except (ValueError, InvalidParameterValueException) as exc:
            print(f"magma_sim: error: {exc}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.interrupt = False  # from here on a signal only ends the loop
        run(node, executor, lambda: stop.requested)
    except KeyboardInterrupt:
        pass
    except RosStartupError as exc:  # rcl rejected the --ros-args
        print(f"magma_sim: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "ExternalShutdownException":
            raise
    finally:
        stop.interrupt = False  # never interrupt the shutdown itself
        if node is not None:
            node.close()
            node.destroy_node()
        if "rclpy" in sys.modules and sys.modules["rclpy"].ok():
            sys.modules["rclpy"].try_shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):  # a late signal must not kill the exit
            signal.signal(signum, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
