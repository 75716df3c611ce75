"""Cost of ~/debug_image while someone subscribes: drawing the overlay (debug_drawing.draw_overlay)
and building the rgb8 message, per camera frame size. It runs on the inference thread after
~/action, so it delays the next model call by this much; with no subscriber nothing is drawn.
Prints medians."""
from __future__ import annotations

import numpy as np
from _timing import median_ms

from magma_ros.ros.debug_drawing import Overlay, draw_overlay

REPEATS = 50
SIZES = ((224, 224), (256, 256), (480, 640), (512, 512), (720, 1280))


def main() -> None:
    overlay = Overlay(instruction="pick up the red cube and put it in the bowl", state="active", latency_s=0.12,
                      gripper=1.0, linear=(0.05, -0.1, 0.03), angular=(0.0, 0.2, -0.5), max_linear_speed=0.25,
                      max_angular_speed=1.0)
    rng = np.random.default_rng(0)
    print("frame (h x w)   drawn (h x w)   draw ms   draw + tobytes ms")
    for height, width in SIZES:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        drawn = draw_overlay(frame, overlay)  # warm: font loading
        draw = median_ms(lambda: draw_overlay(frame, overlay), REPEATS)
        total = median_ms(lambda: draw_overlay(frame, overlay).tobytes(), REPEATS)
        print(f"{height:4d} x {width:<4d}     {drawn.shape[0]:4d} x {drawn.shape[1]:<4d}     "
              f"{draw:7.2f}   {total:7.2f}")


if __name__ == "__main__":
    main()
