#!/usr/bin/env python3
"""Train the ``demo`` backend's policy by behaviour cloning on scripted demonstrations.

    python scripts/train_demo_policy.py            # ~10 min on 2 CPU cores; seeded, reproducible

1. Collects demonstrations in the simulator: the scripted expert's action is the label, while the
   executed action carries noise so the data covers the states a slightly wrong policy visits.
2. Computes the normalization statistics (q01/q99) of the expert actions and writes the robot
   profile ``config/robots/sim_panda.yaml``.
3. Trains the CNN (torch, CPU), then runs DAgger rounds: the trained policy drives, the expert
   labels, the data grows, training continues.
4. Exports the weights for the numpy forward pass to ``magma_ros/policy/demo_weights.npz``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from magma_ros.actions.stats import NormalizationStats  # noqa: E402 - after the sys.path set-up
from magma_ros.policy.demo import (  # noqa: E402 - after the sys.path set-up
    CONV_LAYERS,
    KEYPOINTS,
    WEIGHTS_PATH,
    DemoNetwork,
    downsample,
    network_input,
)
from magma_ros.sim.camera import project  # noqa: E402 - after the sys.path set-up
from magma_ros.sim.expert import expert_action  # noqa: E402 - after the sys.path set-up
from magma_ros.sim.tasks import CUBE_COLOURS, INSTRUCTIONS, Task, parse_instruction  # noqa: E402 - after the sys.path set-up
from magma_ros.sim.world import SimWorld  # noqa: E402 - after the sys.path set-up

CONTROL_RATE_HZ = 5.0
PROFILE_PATH = REPO / "config" / "robots" / "sim_panda.yaml"
VOCABULARY = tuple(CUBE_COLOURS)
TRAIN_SEED_BASE = 1_000_000  # training episodes never share seeds with evaluation (0, 1, 2, ...)
SETTLE_DISTANCE = 0.012  # keep recording until the expert is this close, so the policy learns to stop


class TorchDemoNetwork(nn.Module):
    """The torch twin of ``magma_ros.policy.demo.DemoNetwork`` (same layers, same order)."""

    def __init__(self, n_words: int) -> None:
        super().__init__()
        self.n_words = n_words
        self.conv1 = nn.Conv2d(5, 16, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.keypoints = nn.Conv2d(32, KEYPOINTS, 1)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(0.1))))
        self.fc1 = nn.Linear(2 * KEYPOINTS + 2 + n_words, 128)
        self.fc2 = nn.Linear(128, 128)
        self.head = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: B x 5 x S x S; words: B x n_words -> (B x 4 outputs: x, y, z in [-1, 1], gripper in
        [0, 1]; B x 2 x KEYPOINTS keypoint coordinates)."""
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        maps = self.keypoints(x)
        b, c, h, w = maps.shape
        p = torch.softmax(maps.reshape(b, c, h * w) / self.log_temperature.exp(), dim=2)
        xs = p @ torch.linspace(-1.0, 1.0, w).repeat(h)
        ys = p @ torch.linspace(-1.0, 1.0, h).repeat_interleave(w)
        k = self.n_words
        target = torch.stack([(xs[:, :k] * words).sum(1), (ys[:, :k] * words).sum(1)], dim=1)
        feats = torch.cat([xs, ys, target, words], dim=1)
        out = self.head(torch.relu(self.fc2(torch.relu(self.fc1(feats)))))
        return torch.cat([torch.tanh(out[:, :3]), torch.sigmoid(out[:, 3:])], dim=1), torch.stack([xs, ys], 1)

    def export(self) -> dict[str, np.ndarray]:
        """Weights in the numpy layout: conv kh x kw x Cin x Cout, dense in x out."""
        out: dict[str, np.ndarray] = {}
        for name, _, _ in CONV_LAYERS:
            layer = getattr(self, name)
            out[f"{name}_w"] = layer.weight.detach().numpy().transpose(2, 3, 1, 0).copy()
            out[f"{name}_b"] = layer.bias.detach().numpy().copy()
        for name in ("fc1", "fc2", "head"):
            layer = getattr(self, name)
            out[f"{name}_w"] = layer.weight.detach().numpy().T.copy()
            out[f"{name}_b"] = layer.bias.detach().numpy().copy()
        out["temperature"] = np.array(self.log_temperature.exp().item(), np.float32)
        return out


class Dataset:
    """Growing arrays of labelled frames: the 64 x 64 image, the episode's colour, the expert's
    action toward every cube, and where every target and the gripper are in the image."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.colours: list[int] = []
        self.actions: list[np.ndarray] = []  # n_words x 7
        self.keypoints: list[np.ndarray] = []  # 2 x (n_words + 1): targets, then the gripper

    def add(self, world: SimWorld, image: np.ndarray, colour: str) -> None:
        """Record one frame with the expert's labels for every colour."""
        ee = world.ee_position()
        targets = [parse_instruction(f"reach the {c} cube").target(world.cube_position(c)) for c in VOCABULARY]
        self.images.append(downsample(image))
        self.colours.append(VOCABULARY.index(colour))
        self.actions.append(np.stack([expert_action(Task(c), ee, world.cube_position(c)) for c in VOCABULARY])
                            .astype(np.float32))
        pixels = project(np.stack(targets + [ee]), world.config) / world.config.image_size * 2.0 - 1.0
        self.keypoints.append(pixels.T.astype(np.float32))

    def __len__(self) -> int:
        return len(self.images)

    def save(self, path: Path) -> None:
        """Store the frames (to iterate on training without collecting again)."""
        np.savez_compressed(path, images=np.stack(self.images), colours=np.array(self.colours),
                            actions=np.stack(self.actions), keypoints=np.stack(self.keypoints))

    @classmethod
    def load(cls, path: Path) -> "Dataset":
        """Frames stored by ``save``."""
        data = cls()
        with np.load(path) as arrays:
            data.images, data.colours, data.actions, data.keypoints = (
                list(arrays[k]) for k in ("images", "colours", "actions", "keypoints"))
        return data


def collect(world: SimWorld, data: Dataset, episodes: range, rng: np.random.Generator, noise: float,
            drive=None, max_steps: int = 25) -> None:
    """Run ``episodes``; the expert labels every frame. ``drive(image, instruction)`` (a learned
    policy) moves the arm on half of the steps when given, the noisy expert otherwise."""
    for episode in episodes:
        instruction = INSTRUCTIONS[episode % len(INSTRUCTIONS)]
        task = parse_instruction(instruction)
        world.reset(TRAIN_SEED_BASE + episode)
        for _ in range(max_steps):
            cube = world.cube_position(task.colour)
            label = expert_action(task, world.ee_position(), cube)
            image = world.render()
            data.add(world, image, task.colour)
            if task.distance(world.ee_position(), cube) < SETTLE_DISTANCE:
                break
            executed = label.copy()
            if drive is not None and rng.random() < 0.5:
                executed[:3] = drive(image, instruction)[:3]
            executed[:3] += rng.normal(0.0, noise, 3)
            world.apply(executed[:3] * CONTROL_RATE_HZ, np.zeros(3), executed[6], 1.0 / CONTROL_RATE_HZ)


def compute_stats(actions: np.ndarray) -> NormalizationStats:
    """q01/q99 of the expert actions; rotation is never commanded (0, 0); the gripper is unnormalized."""
    q01 = np.quantile(actions, 0.01, axis=0)
    q99 = np.quantile(actions, 0.99, axis=0)
    q01[3:6] = q99[3:6] = 0.0
    q01[6], q99[6] = 0.0, 1.0
    return NormalizationStats(mask=(True,) * 6 + (False,), q01=tuple(round(float(v), 6) for v in q01),
                              q99=tuple(round(float(v), 6) for v in q99))


def train(model: TorchDemoNetwork, data: Dataset, stats: NormalizationStats, epochs: int, seed: int,
          lr: float) -> float:
    """Adam on the normalized xyz (MSE), the gripper (BCE) and the keypoints (MSE to where the
    targets and the gripper really are in the image). Each frame is shown with the episode's
    instruction half of the time and with a random colour otherwise (the expert labels them all)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.stack([network_input(im) for im in data.images])).permute(0, 3, 1, 2).contiguous()
    colours = torch.tensor(data.colours)
    actions = np.stack(data.actions)  # N x words x 7
    targets = torch.from_numpy(np.concatenate([stats.normalize(actions)[..., :3], actions[..., 6:]], axis=2)
                               .astype(np.float32))  # N x words x 4
    keypoints = torch.from_numpy(np.stack(data.keypoints))  # N x 2 x (words + 1)
    n_words = targets.shape[1]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    loss_value = float("nan")
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        random_words = torch.randint(0, n_words, (len(x),), generator=gen)
        own = torch.rand(len(x), generator=gen) < 0.5
        chosen = torch.where(own, colours, random_words)
        total, parts = 0.0, np.zeros(2)
        for start in range(0, len(x), 64):
            idx = order[start:start + 64]
            words = nn.functional.one_hot(chosen[idx], n_words).float()
            out, kp = model(x[idx], words)
            goal = targets[idx, chosen[idx]]
            action_loss = nn.functional.mse_loss(out[:, :3], goal[:, :3])
            keypoint_loss = nn.functional.mse_loss(kp[:, :, :n_words + 1], keypoints[idx])
            loss = action_loss + 0.1 * nn.functional.binary_cross_entropy(out[:, 3], goal[:, 3]) + keypoint_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            parts += np.array([action_loss.item(), keypoint_loss.item()]) * len(idx)
        sched.step()
        loss_value = total / len(x)
        print(f"  epoch {epoch + 1:3d}/{epochs}  loss {loss_value:.5f} (action {parts[0] / len(x):.5f}, "
              f"keypoints {parts[1] / len(x):.5f})", flush=True)
    return loss_value


def numpy_driver(model: TorchDemoNetwork, stats: NormalizationStats):
    """The exported network as a ``drive(image, instruction)`` function in robot units."""
    net = DemoNetwork(model.export())

    def drive(image: np.ndarray, instruction: str) -> np.ndarray:
        onehot = np.zeros(len(VOCABULARY), np.float32)
        onehot[VOCABULARY.index(parse_instruction(instruction).colour)] = 1.0
        out = net(network_input(downsample(image)), onehot)
        normalized = np.concatenate([out[:3], np.zeros(3), out[3:]])
        return stats.unnormalize(normalized)

    return drive


def write_profile(stats: NormalizationStats, path: Path) -> None:
    """The ``sim_panda`` robot profile with the statistics of these demonstrations."""
    fmt = lambda values: "[" + ", ".join(repr(float(v)) for v in values) + "]"  # noqa: E731 - a one-line formatter local to this function
    path.write_text(f"""\
# The simulated Franka Panda of magma_ros.sim (PyBullet). Normalization statistics are computed
# from the scripted demonstrations by scripts/train_demo_policy.py (which writes this file).
name: sim_panda
description: Simulated Franka Panda (PyBullet), 5 Hz end-effector delta control, demo policy statistics
control_rate_hz: {CONTROL_RATE_HZ}
base_frame: panda_link0
image_size: [256, 256]
prompt_template: "What action should the robot take to {{instruction}}?"
normalization:
  mask: [true, true, true, true, true, true, false]
  q01: {fmt(stats.q01)}
  q99: {fmt(stats.q99)}
gripper:
  mode: binary
  threshold: 0.5
  initial: 1.0
limits:
  max_linear_step: 0.04
  max_angular_step: 0.2
workspace:
  min: [0.20, -0.35, 0.015]
  max: [0.75, 0.35, 0.50]
""", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=210, help="noisy-expert episodes")
    parser.add_argument("--dagger-rounds", type=int, default=1)
    parser.add_argument("--dagger-episodes", type=int, default=60, help="episodes per DAgger round")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--dagger-epochs", type=int, default=15)
    parser.add_argument("--noise", type=float, default=0.008, help="std of executed-action noise (m per step)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--profile", type=Path, default=PROFILE_PATH)
    parser.add_argument("--data-cache", type=Path, help="reuse the expert demonstrations stored here (written "
                        "on the first run); DAgger rounds still collect")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    started = time.monotonic()
    world = SimWorld()
    data = Dataset()
    if args.data_cache and args.data_cache.is_file():
        data = Dataset.load(args.data_cache)
        print(f"loaded {len(data)} frames from {args.data_cache}", flush=True)
    else:
        print(f"collecting {args.episodes} expert episodes", flush=True)
        collect(world, data, range(args.episodes), np.random.default_rng(args.seed), args.noise)
        if args.data_cache:
            data.save(args.data_cache)
    stats = compute_stats(np.stack([a[c] for a, c in zip(data.actions, data.colours)]))
    write_profile(stats, args.profile)
    print(f"{len(data)} frames in {time.monotonic() - started:.0f}s; stats q01={stats.q01} q99={stats.q99}", flush=True)
    model = TorchDemoNetwork(len(VOCABULARY))
    train(model, data, stats, args.epochs, args.seed, lr=2e-3)
    next_episode = args.episodes
    for round_ in range(args.dagger_rounds):
        episodes = range(next_episode, next_episode + args.dagger_episodes)
        next_episode += args.dagger_episodes
        print(f"DAgger round {round_ + 1}: {len(episodes)} episodes", flush=True)
        collect(world, data, episodes, np.random.default_rng(args.seed + round_ + 1), args.noise / 2,
                drive=numpy_driver(model, stats))
        train(model, data, stats, args.dagger_epochs, args.seed + round_ + 1, lr=7e-4)
    arrays = model.export()
    arrays.update(vocabulary=np.array(VOCABULARY), q01=np.array(stats.q01), q99=np.array(stats.q99),
                  mask=np.array(stats.mask))
    np.savez_compressed(args.weights, **arrays)
    world.close()
    print(f"wrote {args.weights} ({args.weights.stat().st_size / 1e6:.2f} MB) and {args.profile} "
          f"in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
