"""Which camera frames may reach the model: stamped, newer than every frame admitted before, and
recent on the node's clock. Pure Python; the clock (integer nanoseconds of ROS time: simulated
with use_sim_time, else system time, the time camera stamps are on; None while it has no valid
time, e.g. a negative /clock) is injected."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

# the diagnostics counter of each rule that drops a frame
UNSTAMPED = "images_unstamped"  # stamp 0 without allow_unstamped_images
REPEATED = "images_repeated"  # the same stamp as the newest admitted frame
OUT_OF_ORDER = "images_out_of_order"  # stamped before the newest admitted frame
TOO_OLD = "images_too_old"  # stamped more than max_age before the clock
FROM_FUTURE = "images_from_future"  # stamped more than max_age after the clock
NO_CLOCK = "images_without_clock"  # the clock has no valid time
RULES = (UNSTAMPED, REPEATED, OUT_OF_ORDER, TOO_OLD, FROM_FUTURE, NO_CLOCK)

_NS = 1_000_000_000


@dataclass(frozen=True)
class FrameRejection:
    """Why a frame was dropped: the rule's counter and a one-line message."""

    counter: str
    message: str


class FrameGate:
    """Admits a frame only if it is new and recent; thread-safe.

    - A zero stamp is refused unless ``allow_unstamped``, which takes it as the clock's reading.
    - A stamp equal to the newest admitted one is a repeat (a frame published again, or a camera
      whose stamps are coarser than its frame period).
    - With ``max_age_s`` > 0, a stamp more than that before the clock is too old, and one more
      than that after it is from the future (camera and node clocks disagree); 0 turns both off.
    - A stamp before the newest admitted one is out of order.

    The first rule that applies, in this order, is the one counted.

    When the clock goes back (a simulator reset, a bag restarted, a system clock step) the newest
    admitted stamp is forgotten: frames stamped on the new timeline are admitted again, and the
    age rule still refuses those from before the jump. While the clock has no valid time, every
    frame is refused."""

    def __init__(self, clock_ns: Callable[[], int | None], max_age_s: float, allow_unstamped: bool = False) -> None:
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._max_age_ns = 0
        self.allow_unstamped = allow_unstamped
        self.configure(max_age_s)
        self._newest: int | None = None  # stamp of the newest admitted frame (ns)
        self._last_reading: int | None = None
        self.last_rejection = ""  # the message of the newest rejection

    def configure(self, max_age_s: float) -> None:
        """Set the maximum age (seconds; 0 = no age check)."""
        if not max_age_s >= 0.0:
            raise ValueError(f"max_age_s must be >= 0, got {max_age_s!r}")
        with self._lock:
            self._max_age_ns = round(max_age_s * _NS)

    @property
    def max_age_s(self) -> float:
        return self._max_age_ns / _NS

    def admit(self, sec: int, nanosec: int) -> FrameRejection | None:
        """Judge a frame stamped ``sec`` s + ``nanosec`` ns: None admits it (it becomes the newest),
        otherwise the rejection (also kept as ``last_rejection``)."""
        with self._lock:
            now = self._clock_ns()
            if now is None:
                rejection = FrameRejection(NO_CLOCK, "the node's clock has no valid time (negative)")
                self.last_rejection = rejection.message
                return rejection
            if self._last_reading is not None and now < self._last_reading:
                self._newest = None  # the clock went back: a new timeline
            self._last_reading = now
            rejection = self._judge(int(sec) * _NS + int(nanosec), now)
            if rejection is not None:
                self.last_rejection = rejection.message
            return rejection

    def _judge(self, stamp: int, now: int) -> FrameRejection | None:
        if stamp == 0:
            if not self.allow_unstamped:
                return FrameRejection(UNSTAMPED, "frame without a stamp (0): stamp the camera's frames, or set "
                                                 "allow_unstamped_images to take the arrival time")
            stamp = now
        newest = self._newest
        if newest is not None and stamp == newest:
            return FrameRejection(REPEATED, f"frame stamped {_s(stamp)}, the same as the newest accepted frame: a "
                                            "repeat (a camera whose stamps are coarser than its frame period repeats "
                                            "them)")
        limit = self._max_age_ns
        if limit and now - stamp > limit:
            return FrameRejection(TOO_OLD, f"frame stamped {(now - stamp) / _NS:.3f} s before the node's clock "
                                           f"({_s(now)}), more than max_image_age_s ({limit / _NS:g} s)")
        if limit and stamp - now > limit:
            return FrameRejection(FROM_FUTURE, f"frame stamped {(stamp - now) / _NS:.3f} s after the node's clock "
                                               f"({_s(now)}), more than max_image_age_s ({limit / _NS:g} s): are "
                                               "the camera and the node on the same clock?")
        if newest is not None and stamp < newest:
            return FrameRejection(OUT_OF_ORDER, f"frame stamped {_s(stamp)}, before the newest accepted frame "
                                                f"({_s(newest)})")
        self._newest = stamp
        return None


def _s(ns: int) -> str:
    """Nanoseconds as ``sec.nanosec s``, exact."""
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"{sign}{ns // _NS}.{ns % _NS:09d} s"
