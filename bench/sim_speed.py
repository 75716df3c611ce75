"""Simulator and demo-policy speed: camera render, demo policy inference (numpy), one in-process
control step, and how much faster than real time sim-eval runs. Prints medians."""
from __future__ import annotations

import time

import numpy as np
from _timing import median_ms

from magma_ros.actions import load_profile
from magma_ros.policy import BackendConfig, create_policy
from magma_ros.sim.controllers import PolicyController
from magma_ros.sim.episode import run_episode
from magma_ros.sim.tasks import INSTRUCTIONS
from magma_ros.sim.world import SimWorld

REPEATS = 30


def main() -> None:
    profile = load_profile("sim_panda")
    policy = create_policy(BackendConfig(backend="demo"), profile)
    world = SimWorld()
    world.reset(0)
    image = world.render()
    render = median_ms(world.render, REPEATS)
    infer = median_ms(lambda: policy.predict(image, "reach the red cube"), REPEATS)
    physics = median_ms(lambda: world.apply(np.zeros(3), np.zeros(3), 1.0, profile.control_period_s), REPEATS)
    controller = PolicyController(policy, profile)
    steps, start = 0, time.perf_counter()
    for seed in range(9):
        steps += run_episode(world, INSTRUCTIONS[seed % 3], 1000 + seed, controller,
                             control_rate_hz=profile.control_rate_hz, max_steps=40).steps
    per_step = (time.perf_counter() - start) / steps
    print(f"camera render 256x256 (TinyRenderer)   median {render:7.1f} ms")
    print(f"demo policy predict (numpy)             median {infer:7.1f} ms")
    print(f"physics + IK for one 0.2 s control step median {physics:7.1f} ms")
    print(f"in-process closed-loop step             mean   {1000 * per_step:7.1f} ms over {steps} steps")
    print(f"sim-eval speed vs real time (5 Hz)      {profile.control_period_s / per_step:7.1f}x")
    world.close()


if __name__ == "__main__":
    main()
