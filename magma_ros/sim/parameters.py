"""``magma_sim``'s parameters: their declaration (:data:`SIM_PARAMETERS`) and the checked values
the node runs with (:class:`SimSettings`). Pure Python: no ROS."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..interface import INSTRUCTION, NODE_ACTION
from ..options import Option

_POSITIVE = (0.0, math.inf)  # the code also rejects 0 itself: see SimSettings.from_values

SIM_PARAMETERS: tuple[Option, ...] = (
    Option("lockstep", False, "advance only when the controller has had its turn (run magma_node with "
                              "use_sim_time:=true); false: run in (scaled) real time"),
    Option("lockstep_timeout_s", 10.0, "lockstep: longest wait (wall-clock seconds) for the controller's turn "
                                       "before stepping without it (counted as lockstep_timeouts)", range=_POSITIVE),
    Option("reply_topic", NODE_ACTION.name, "the controller's decoded actions (std_msgs/Float64MultiArray): "
                                            "its reply to a camera frame"),
    Option("real_time_factor", 1.0, "without lockstep: simulated seconds per wall-clock second (> 0); with a "
                                    "value other than 1 run this node and magma_node with use_sim_time:=true",
           range=_POSITIVE),
    Option("camera_rate_hz", 10.0, "camera frames per simulated second (lockstep: at most the controller's "
                                   "control rate, so that it answers every frame)", range=_POSITIVE),
    Option("command_timeout_s", 0.5, "a twist is executed until its stamp is this old (s), then zero; "
                                     "older twists are ignored", range=_POSITIVE),
    Option("seed", 0, "seed of the first episode"),
    Option("instruction", "", f"initial task (also set by {INSTRUCTION.absolute})"),
)


@dataclass(frozen=True)
class SimSettings:
    """The parameter values, typed and checked."""

    lockstep: bool
    lockstep_timeout_s: float
    reply_topic: str
    real_time_factor: float
    camera_rate_hz: float
    command_timeout_s: float
    seed: int
    instruction: str

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> SimSettings:
        """Settings from ``{name: value}``; ``ValueError`` names a positive parameter that is not > 0."""
        settings = cls(lockstep=bool(values["lockstep"]), lockstep_timeout_s=float(values["lockstep_timeout_s"]),
                       reply_topic=str(values["reply_topic"]), real_time_factor=float(values["real_time_factor"]),
                       camera_rate_hz=float(values["camera_rate_hz"]),
                       command_timeout_s=float(values["command_timeout_s"]), seed=int(values["seed"]),
                       instruction=str(values["instruction"]))
        for option in SIM_PARAMETERS:
            if option.range is _POSITIVE:
                value = getattr(settings, option.name)
                if not math.isfinite(value) or value <= 0.0:
                    raise ValueError(f"parameter {option.name} must be > 0, got {value!r}")
        return settings
