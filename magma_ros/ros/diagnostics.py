"""The node's messages: its state, counters and rates in diagnostic_msgs form (the counters
themselves live in ``safety.node_stats``, re-exported here), and its twist commands."""
from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped

from ..actions.twist import Twist
from ..safety.frames import FrameGate
from ..safety.node_stats import COUNTERS, NodeStats, RateMeter, Samples
from ..safety.supervisor import Command, SafetyState, SafetySupervisor

__all__ = ["COUNTERS", "NodeStats", "RateMeter", "Samples", "build_diagnostics", "node_values", "twist_message"]

_LEVELS = {SafetyState.ACTIVE: DiagnosticStatus.OK, SafetyState.ESTOP: DiagnosticStatus.ERROR,
           SafetyState.FAULT: DiagnosticStatus.ERROR}


def build_diagnostics(stamp, name: str, hardware_id: str, state: SafetyState, reason: str,
                      values: dict[str, object]) -> DiagnosticArray:
    """One DiagnosticStatus: level from the state (OK active, ERROR fault/e-stop, WARN otherwise)."""
    status = DiagnosticStatus(level=_LEVELS.get(state, DiagnosticStatus.WARN), name=name,
                              message=f"{state.value}: {reason}", hardware_id=hardware_id)
    status.values = [KeyValue(key="state", value=state.value)]
    status.values += [KeyValue(key=k, value=_text(v)) for k, v in values.items()]
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def node_values(supervisor: SafetySupervisor, stats: NodeStats, command: Command | None, *, instruction: str,
                backend: str, control_rate_hz: float, images_dropped: int, frames: FrameGate) -> dict[str, object]:
    """The key/values of the node's safety status: state details, rates, latency and counters."""
    inference = stats.inference_s.values()[-20:]
    values: dict[str, object] = {
        "enabled": supervisor.enabled,
        "estop_latched": supervisor.estop_latched,
        "last_fault": supervisor.last_fault,
        "publishing": command.publish if command else True,
        "clock_jumps": supervisor.clock_jumps,
        "instruction": instruction,
        "backend": backend,
        "control_rate_hz": control_rate_hz,
        "image_rate_hz": stats.image_rate.rate(),
        "action_rate_hz": stats.action_rate.rate(),
        "publish_rate_hz": stats.publish_rate.rate(),
        "inference_ms_last": 1000.0 * inference[-1] if inference else 0.0,
        "inference_ms_mean": 1000.0 * sum(inference) / len(inference) if inference else 0.0,
        "images_dropped": images_dropped,
        "max_image_age_s": frames.max_age_s,
        "last_image_rejection": frames.last_rejection,
    }
    values.update(stats.counters)
    return values


def twist_message(stamp: Time, frame_id: str, twist: Twist) -> TwistStamped:
    """A command as a TwistStamped."""
    msg = TwistStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) = (float(v) for v in twist.linear)
    (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = (float(v) for v in twist.angular)
    return msg
