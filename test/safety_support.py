"""Helpers of the magma_node safety tests (test_node_safety_*.py): a simulated /clock driven by
the test, and a policy that injects one exception into a chosen node callback on request."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np

from magma_ros.interface import CLOCK, ENABLE
from magma_ros.policy.base import Prediction, check_image

MOVE = (0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 1.0)  # robot units per control step


def stamp_s(msg: Any) -> float:
    """A message's header stamp in seconds."""
    return msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec


class SimClock:
    """Publishes rosgraph_msgs/Clock from the probe's node at ``rate_hz``, advancing with the
    monotonic clock from ``start`` seconds; ``jump_to`` sets it elsewhere. The probe's streamed
    images are stamped on it, as a simulated camera's are."""

    def __init__(self, probe: Any, start: float = 100.0, rate_hz: float = 100.0) -> None:
        from rosgraph_msgs.msg import Clock

        self._msg_type = Clock
        self._pub = probe.node.create_publisher(Clock, CLOCK.name, CLOCK.qos.profile())
        self._lock = threading.Lock()
        self._base, self._since, self._held = start, time.monotonic(), False
        self._stop = threading.Event()
        self._period = 1.0 / rate_hz
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        probe.image_clock = self.now

    def now(self) -> float:
        with self._lock:
            return self._base + (0.0 if self._held else time.monotonic() - self._since)

    def jump_to(self, t: float, hold: bool = False) -> None:
        """Set the clock to ``t``; with ``hold`` it stays there (every /clock message the same)."""
        with self._lock:
            self._base, self._since, self._held = t, time.monotonic(), hold

    def _run(self) -> None:
        from builtin_interfaces.msg import Time

        while not self._stop.is_set():
            t = self.now()
            ns = round(t * 1e9)  # floor division: -4.5 s is sec -5, nanosec 5e8
            self._pub.publish(self._msg_type(clock=Time(sec=ns // 10**9, nanosec=ns % 10**9)))
            self._stop.wait(self._period)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# --- a policy created inside the node process: -p backend:=safety_support:faulty ----------------
def _raise_once(owner: Any, name: str, what: str) -> None:
    """Replace ``owner.name`` by a function that raises RuntimeError once, then restores it."""
    original = getattr(owner, name)

    def broken(*args: Any, **kwargs: Any) -> Any:
        setattr(owner, name, original)
        raise RuntimeError(f"injected fault in {what}")
    setattr(owner, name, broken)


def _targets() -> dict[str, Callable[[], None]]:
    from magma_ros.ros import node as node_module
    from magma_ros.safety.supervisor import SafetySupervisor

    return {
        "images": lambda: _raise_once(node_module, "image_to_rgb", "image conversion"),
        "diagnostics": lambda: _raise_once(node_module, "build_diagnostics", "diagnostics"),
        "enable": lambda: _raise_once(SafetySupervisor, "set_enabled", ENABLE.name),
        "ticks": lambda: _raise_once(SafetySupervisor, "tick", "the publish tick"),
    }


class FaultyPolicy:
    """Returns MOVE; the instruction 'break <target>' (images, diagnostics, enable, ticks) first
    makes the node's next call of that code path raise once."""

    vocab_size = 128000

    def __init__(self) -> None:
        self._done: set[str] = set()

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        check_image(image)
        words = instruction.split()
        if len(words) == 2 and words[0] == "break" and instruction not in self._done:
            self._done.add(instruction)
            _targets()[words[1]]()
        return Prediction(action=np.array(MOVE), text="move")

    def close(self) -> None:
        pass


def faulty(config: Any, profile: Any) -> FaultyPolicy:
    """Factory for ``backend:=safety_support:faulty``."""
    return FaultyPolicy()
