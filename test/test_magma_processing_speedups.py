"""The host-side speed work on the ``magma`` path keeps its results: Magma's crop processing gives
the pixels of torch's bilinear kernel at any thread count and for any array layout;
``resize_image`` stays within ``PILLOW_TOLERANCE`` of Pillow's bicubic (Pillow itself where torch
cannot); tokenized prompts are cached per exact prompt text, in a bounded cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_magma import build_tiny_magma

from magma_ros.policy.magma import PILLOW_TOLERANCE, resize_image, torch_pass_order
from magma_ros.policy.magma_native.adapter import TOKENIZED_PROMPTS
from magma_ros.policy.magma_native.config import ImageSettings
from magma_ros.policy.magma_native.loading import load_native
from magma_ros.policy.magma_native.processing import best_grid, preprocess
from magma_ros.policy.vlm import PROMPT_CACHE_SIZE, VLMRunner

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
MAGMA_8B = ImageSettings(512, 4, MEAN, STD)
RNG = np.random.default_rng(21)


@pytest.fixture
def threads():
    """``torch.set_num_threads``, restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def reference_crops(image: np.ndarray, settings: ImageSettings) -> torch.Tensor:
    """Magma's processing written out plainly: normalize, one bilinear resize of the 3-channel
    image to the grid, crops row by row. Called with 2 torch threads, where torch resizes a
    3-channel image with its generic bilinear kernel."""
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    pixels = (pixels - torch.tensor(settings.image_mean).view(3, 1, 1)) / torch.tensor(settings.image_std).view(3, 1, 1)
    rows, cols = best_grid(image.shape[1], image.shape[0], settings)
    size = settings.base_img_size
    resized = F.interpolate(pixels[None], size=(rows * size, cols * size), mode="bilinear")
    crops = resized.unfold(2, size, size).unfold(3, size, size)
    return crops.permute(0, 2, 3, 1, 4, 5).reshape(rows * cols, 3, size, size)


CASES = [((256, 256), MAGMA_8B), ((480, 640), MAGMA_8B), ((256, 256), ImageSettings(64, 4, MEAN, STD)),
         ((300, 120), ImageSettings(96, 4, MEAN, STD)), ((224, 224), ImageSettings(512, 1, MEAN, STD))]


@pytest.mark.parametrize(("shape", "settings"), CASES)
def test_crops_are_torch_bilinear_pixels_at_any_thread_count(shape, settings, threads):
    image = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
    threads(2)
    want = reference_crops(image, settings)
    for count in (1, 2):
        threads(count)
        crops, grid = preprocess(image, settings)
        assert grid == best_grid(shape[1], shape[0], settings)
        assert crops.dtype == torch.float32 and torch.equal(crops, want), f"{count} thread(s)"


def test_crops_take_any_array_layout():
    """A strided view, a BGR -> RGB flip (negative strides) and a read-only array give the same crops
    as a plain copy, and the caller's array is never written."""
    bgr = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    want = preprocess(rgb, MAGMA_8B)[0]
    strided = np.ascontiguousarray(rgb.transpose(2, 0, 1)).transpose(1, 2, 0)
    read_only = rgb.copy()
    read_only.flags.writeable = False
    for image in (strided, bgr[:, :, ::-1], read_only):
        before = image.copy()
        assert torch.equal(preprocess(image, MAGMA_8B)[0], want)
        assert np.array_equal(image, before)


def pillow(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BICUBIC))


def contents(height: int, width: int) -> dict[str, np.ndarray]:
    """Noise, a smooth pattern and sharp black and white squares (which show a wrong pass order most)."""
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.stack([127 + 120 * np.sin(xx / 13 + c) * np.cos(yy / 29) for c in range(3)], -1).astype(np.uint8)
    squares = np.kron(RNG.integers(0, 2, (height // 8 + 1, width // 8 + 1, 3)) * 255, np.ones((8, 8, 1)))
    return {"noise": RNG.integers(0, 256, (height, width, 3), dtype=np.uint8), "smooth": smooth,
            "squares": squares[:height, :width].astype(np.uint8)}


SIZES = [((480, 640), (256, 256)), ((720, 1280), (256, 256)), ((1080, 1920), (224, 224)), ((256, 256), (224, 224)),
         ((120, 160), (256, 256)), ((300, 200), (256, 256)), ((600, 130), (90, 100)), ((97, 1000), (500, 13)),
         ((481, 643), (255, 257))]


@pytest.mark.parametrize(("shape", "size"), SIZES)
def test_resize_stays_within_the_tolerance_of_pillow(shape, size):
    width, height = size
    used_torch = torch_pass_order(shape[1], shape[0], width, height) is not None
    for name, image in contents(*shape).items():
        got = resize_image(image, size)
        assert got.shape == (height, width, 3) and got.dtype == np.uint8
        diff = np.abs(got.astype(np.int16) - pillow(image, width, height).astype(np.int16))
        if not used_torch:
            assert diff.max() == 0, name
        assert diff.max() <= PILLOW_TOLERANCE, f"{name}: {diff.max()}"
        assert np.mean(diff != 0) < 0.02, f"{name}: {np.mean(diff != 0):.3%} of the values differ"


def test_a_camera_frame_takes_torch_and_a_wrong_pass_order_is_caught():
    """The usual camera frame is resized by torch; where torch's one-call order is far from Pillow's
    (much more reduction in height than in width), the other order is chosen."""
    assert torch_pass_order(640, 480, 256, 256) == "wh"
    assert torch_pass_order(100, 600, 90, 90) == "hw"


def test_resize_is_a_no_op_at_the_target_size_and_takes_flipped_frames():
    image = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert resize_image(image, (256, 256)) is image
    bgr = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    read_only = bgr.copy()
    read_only.flags.writeable = False
    want = resize_image(np.ascontiguousarray(bgr[:, :, ::-1]), (256, 256))
    assert np.array_equal(resize_image(bgr[:, :, ::-1], (256, 256)), want)
    assert np.array_equal(resize_image(read_only, (256, 256)), resize_image(bgr, (256, 256)))


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    adapter = load_native(build_tiny_magma(tmp_path_factory.mktemp("tiny_magma")), "cpu", torch.float32, "sdpa")
    return VLMRunner(adapter, "tiny")


def test_a_changed_instruction_gives_new_token_ids(runner):
    image = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    seen = {}
    for instruction in ["pick up the red block", "open the drawer", "pick up the red block"]:
        ids = runner.prepare_action(image, instruction).inputs["input_ids"]
        rendered = runner.adapter.prompt([{"role": "user", "content": instruction}], with_image=True)
        assert torch.equal(ids, runner.adapter.tokenizer(rendered, return_tensors="pt")["input_ids"])
        seen.setdefault(instruction, ids)
        assert ids is seen[instruction]  # a repeated instruction reuses its cached ids
    first, other = seen["pick up the red block"], seen["open the drawer"]
    assert first.shape != other.shape or not torch.equal(first, other)


def test_the_prompt_caches_are_bounded(runner):
    image = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for i in range(max(TOKENIZED_PROMPTS, PROMPT_CACHE_SIZE) + 10):
        runner.prepare_action(image, f"instruction {i}")
    assert runner._action_prompt.cache_info().currsize == PROMPT_CACHE_SIZE
    assert runner.adapter._prompt_tokens.cache_info().currsize == TOKENIZED_PROMPTS
