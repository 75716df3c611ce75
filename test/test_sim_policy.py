"""The demo backend: shipped weights, the token contract, numpy inference equal to the torch
twin it was trained as, closed-loop success in-process, and clear errors."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from magma_ros.actions import ActionDecoder, ActionTokenizer, load_profile
from magma_ros.policy import BackendConfig, PolicyConfigError, PolicyError, create_policy
from magma_ros.policy.demo import WEIGHTS_PATH, DemoNetwork, network_input
from magma_ros.sim.controllers import PolicyController
from magma_ros.sim.episode import run_episode
from magma_ros.sim.tasks import INSTRUCTIONS
from magma_ros.sim.world import SimWorld


@pytest.fixture(scope="module")
def profile():
    return load_profile("sim_panda")


@pytest.fixture(scope="module")
def policy(profile):
    p = create_policy(BackendConfig(backend="demo"), profile)
    yield p
    p.close()


@pytest.fixture(scope="module")
def world():
    w = SimWorld()
    yield w
    w.close()


def test_weights_ship_in_the_package_and_are_small():
    assert WEIGHTS_PATH.is_file()
    assert WEIGHTS_PATH.stat().st_size < 5_000_000


def test_prediction_is_seven_action_ids_that_decode_with_the_profile(policy, profile, world):
    world.reset(0)
    prediction = policy.predict(world.render(), "reach the red cube")
    ids = prediction.token_ids
    assert ids is not None and ids.shape == (7,)
    tokenizer = ActionTokenizer(policy.vocab_size)
    assert policy.vocab_size == 128000 and np.all(tokenizer.is_action_id(ids))
    action = ActionDecoder(profile.stats, tokenizer).decode_ids(ids)
    assert np.all(action[3:6] == 0.0), "the demo policy never rotates"
    assert action[6] > profile.gripper.threshold, "reaching keeps the gripper open"
    assert np.all(np.abs(action[:3]) <= 0.031)
    assert prediction.timings["inference"] < 1.0


def test_the_instruction_selects_the_target(policy, profile, world):
    """The same image gives different motions for different colours, each toward its cube."""
    world.reset(11)
    image = world.render()
    decoder = ActionDecoder(profile.stats)
    ee = world.ee_position()
    agree = 0
    for instruction in INSTRUCTIONS:
        colour = instruction.split()[2]
        step = decoder.decode_ids(policy.predict(image, instruction).token_ids)[:3]
        to_target = world.cube_position(colour)[:2] - ee[:2]
        agree += float(np.dot(step[:2], to_target)) > 0
    assert agree == 3


def test_unknown_instruction_is_a_backend_error(policy, world):
    with pytest.raises(PolicyError, match="red, green, blue"):
        policy.predict(world.render(), "reach the yellow cube")


@pytest.mark.parametrize("instruction", ["pick up the red cube", "touch the red cube"])
def test_tasks_it_was_not_trained_for_are_a_backend_error(policy, world, instruction):
    """No silent reinterpretation: 'pick up the red cube' must not quietly become a reach."""
    with pytest.raises(PolicyError, match="reaching only"):
        policy.predict(world.render(), instruction)


def test_image_of_the_wrong_size_is_a_backend_error(policy):
    with pytest.raises(PolicyError, match="multiples of 64"):
        policy.predict(np.zeros((100, 100, 3), np.uint8), "reach the red cube")


def test_profile_with_other_statistics_is_refused():
    with pytest.raises(PolicyConfigError, match="sim_panda"):
        create_policy(BackendConfig(backend="demo"), load_profile("bridge_orig"))


def test_other_weights_file_via_model_option(tmp_path, profile):
    with pytest.raises(PolicyConfigError, match="cannot load"):
        create_policy(BackendConfig(backend="demo", model=str(tmp_path / "missing.npz")), profile)


def test_weights_of_another_architecture_are_refused_at_start(tmp_path, profile):
    with np.load(WEIGHTS_PATH) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fc1_w"] = arrays["fc1_w"][:-1]
    path = tmp_path / "other.npz"
    np.savez(path, **arrays)
    with pytest.raises(PolicyConfigError, match="does not fit this network: fc1_w has shape"):
        create_policy(BackendConfig(backend="demo", model=str(path)), profile)


def test_inference_needs_no_torch(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from magma_ros.actions import load_profile\n"
            "from magma_ros.policy import BackendConfig, create_policy\n"
            "p = create_policy(BackendConfig(backend='demo'), load_profile('sim_panda'))\n"
            "print(p.predict(np.zeros((256, 256, 3), np.uint8), 'reach the blue cube').token_ids.tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(eval(out.stdout)) == 7


def test_numpy_forward_equals_the_torch_network_it_was_trained_as():
    torch = pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("train_demo_policy", REPO / "scripts" / "train_demo_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(3)
    net = module.TorchDemoNetwork(3)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    words = np.eye(3, dtype=np.float32)[1]
    x = network_input(small)
    with torch.no_grad():
        expected = net(torch.from_numpy(x).permute(2, 0, 1)[None], torch.from_numpy(words)[None])[0][0].numpy()
    got = DemoNetwork(net.export())(x, words)
    assert np.allclose(got, expected, atol=1e-4)


def test_demo_policy_reaches_targets_in_process(policy, profile, world):
    """Seeds outside the training range; the full decode path of the node (ActionConverter)."""
    controller = PolicyController(policy, profile)
    results = [run_episode(world, instruction, seed, controller, control_rate_hz=profile.control_rate_hz,
                           max_steps=40)
               for seed, instruction in zip(range(500, 506), INSTRUCTIONS * 2)]
    assert sum(r.success for r in results) >= 5, [(r.instruction, r.seed, r.final_distance) for r in results]
