"""``magma-ros finetune``'s bad inputs (one line, exit 2, nothing written), skipped NaN actions,
the statistics warning, --config, reproducibility with --seed, and Ctrl-C + --resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from finetune_support import ACTION_TOPIC, ACTIONS, SPAN, build_inputs, episodes, write_bag, write_profile
from safetensors.torch import load_file
from waiting import wait_until

from magma_ros.cli import main

QUICK = ["--device", "cpu", "--epochs", "1", "--batch-size", "4", "--val-fraction", "0", "--no-merge"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return build_inputs(tmp_path_factory.mktemp("finetune_errors"))


def finetune(capsys, *args) -> tuple[int, str]:
    code = main(["finetune", *map(str, args)])
    return code, capsys.readouterr().err


def base_args(task, out: Path, bag: Path | None = None) -> list:
    return ["--model", task.base, "--bags", bag or task.train_bag, "--robot", task.profile,
            "--action-topic", ACTION_TOPIC, "--out", out, *QUICK]


def assert_refused(code: int, err: str, out: Path, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("magma-ros finetune: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()


def test_bag_without_images(task, tmp_path, capsys):
    bag = write_bag(tmp_path / "no_images", episodes(1, 5, 0), images=False)
    code, err = finetune(capsys, *base_args(task, tmp_path / "out", bag))
    assert_refused(code, err, tmp_path / "out", str(bag), "image topic /camera/image_raw not found")


def test_bag_without_ground_truth(task, tmp_path, capsys):
    bag = write_bag(tmp_path / "no_actions", episodes(1, 5, 0), actions=False)
    code, err = finetune(capsys, *base_args(task, tmp_path / "out", bag))
    assert_refused(code, err, tmp_path / "out", str(bag), f"ground-truth topic {ACTION_TOPIC} not found")


def test_bag_whose_frames_all_lack_ground_truth(task, tmp_path, capsys):
    bag = write_bag(tmp_path / "all_nan", episodes(1, 4, 0), nan_frames=range(4))
    code, err = finetune(capsys, *base_args(task, tmp_path / "out", bag))
    assert_refused(code, err, tmp_path / "out", str(bag), "no training frame", "bad_ground_truth 4")


def test_existing_output_directory(task, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = finetune(capsys, *base_args(task, out))
    assert code == 2 and err.strip() == f"magma-ros finetune: error: --out {out}: exists; choose another directory " \
                                       "or give --overwrite"
    assert (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("make_base, needle", [
    (lambda root: root, "config.json: the model configuration is missing"),
    (lambda root: (root / "config.json").write_text('{"model_type": "llava"}') and root,
     "model_type must be 'magma', got 'llava'"),
])
def test_base_that_is_not_a_magma_checkpoint(task, tmp_path, capsys, make_base, needle):
    base = tmp_path / "not_magma"
    base.mkdir()
    make_base(base)
    args = base_args(task, tmp_path / "out")
    args[1] = base
    code, err = finetune(capsys, *args)
    assert_refused(code, err, tmp_path / "out", f"--model {base}: not a Magma checkpoint", needle)


def test_missing_peft_names_the_extra(task, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    code, err = finetune(capsys, *base_args(task, tmp_path / "out"))
    assert_refused(code, err, tmp_path / "out", "pip install 'magma_ros[finetune]'")


def test_qlora_without_bitsandbytes_names_the_extra(task, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    code, err = finetune(capsys, *base_args(task, tmp_path / "out"), "--quantization", "nf4")
    assert_refused(code, err, tmp_path / "out", "pip install 'magma_ros[quantization]'")


@pytest.mark.parametrize("extra, needle", [
    (["--dtype", "bfloat16"], "--dtype bfloat16: training on the CPU runs in float32"),
    (["--learning-rate", "0"], "--learning-rate: must be a finite number > 0"),
    (["--lora-targets", ","], "--lora-targets: name at least one linear layer"),
    (["--lora-targets", "no_such_layer", "--quiet"], "--lora-targets no_such_layer: no linear layer of the language "
     "model has that name (its linear layers: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj)"),
])
def test_bad_options(task, tmp_path, capsys, extra, needle):
    code, err = finetune(capsys, *base_args(task, tmp_path / "out"), *extra)
    assert_refused(code, err, tmp_path / "out", needle)


def test_val_fraction_needs_two_episodes(task, tmp_path, capsys):
    bag = write_bag(tmp_path / "one_episode", episodes(1, 6, 0))
    args = [a for a in base_args(task, tmp_path / "out", bag)]
    args[args.index("--val-fraction") + 1] = "0.2"
    code, err = finetune(capsys, *args)
    assert_refused(code, err, tmp_path / "out", "the bags hold 1 episode(s), too few")


def test_config_file_unknown_key_and_bad_value(task, tmp_path, capsys):
    for text, needle in (("lora_rnak: 8\n", "lora_rnak: unknown option"),
                         ("epochs: many\n", "argument --epochs: invalid int value: 'many'"),
                         ("- a\n- b\n", "expected a mapping of option names to values")):
        config = tmp_path / "c.yaml"
        config.write_text(text)
        code, err = finetune(capsys, *base_args(task, tmp_path / "out"), "--config", config)
        assert_refused(code, err, tmp_path / "out", f"--config {config}: ", needle)


def test_nan_actions_skipped_and_counted_and_stats_that_do_not_cover_the_data(task, tmp_path, capsys):
    """Also: every option from --config, the command line winning over it."""
    eps = episodes(2, 10, 0)
    bag = write_bag(tmp_path / "nan", eps, nan_frames=(3, 11, 12))
    actions = np.array([ACTIONS[(c, e.side)] for e in eps for c in e.colours])
    kept = np.delete(actions, [3, 11, 12], axis=0)
    clipped = (np.abs(kept[:, :6]) > SPAN / 4).mean(axis=0)
    narrow = write_profile(tmp_path / "narrow.yaml", normalization={
        "mask": [True] * 6 + [False], "q01": [-SPAN / 4] * 6 + [0.0], "q99": [SPAN / 4] * 6 + [1.0]})
    config = tmp_path / "finetune.yaml"
    config.write_text(json.dumps({"model": str(task.base), "bags": [str(bag)], "robot": str(narrow),
                                  "action-topic": ACTION_TOPIC, "out": str(tmp_path / "ignored"), "device": "cpu",
                                  "epochs": 1, "batch_size": 4, "val_fraction": 0, "merge": False, "max_steps": 1}))
    out = tmp_path / "out"
    code, err = finetune(capsys, "--config", config, "--out", out)
    assert code == 0, err
    assert "warning: 3 training action message(s) with NaN or out-of-range values skipped" in err
    warning = next(line for line in err.splitlines() if "do not cover the data" in line)
    shown = ", ".join(f"{name} {value:.3f}" for name, value in zip(("x", "y", "z", "roll", "pitch", "yaw"), clipped))
    assert f"clipped fraction per axis {shown}, gripper 0.000 (compute them from your bags: magma-ros stats)" in warning
    assert "frames: 17 training (2 episodes)" in err  # 20 images, 3 with a NaN action
    assert out.is_dir() and not (tmp_path / "ignored").exists() and not (out / "config.json").exists()
    assert len([line for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]) == 1


def adapter_weights(out: Path) -> dict:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def test_seed_reproducible_and_ctrl_c_saves_a_checkpoint_that_resume_continues(task, tmp_path, capsys,
                                                                               console_script):
    args = base_args(task, tmp_path / "x")[:-len(QUICK)] + QUICK + ["--max-steps", "30", "--save-every", "100"]
    args = [str(a) for a in args[:args.index("--out")] + args[args.index("--out") + 2:]]
    for name in ("a", "b"):
        code, err = finetune(capsys, *args, "--out", tmp_path / name, "--quiet")
        assert code == 0, err
    a, b = adapter_weights(tmp_path / "a"), adapter_weights(tmp_path / "b")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)

    out = tmp_path / "c"
    work = tmp_path / "c.partial"
    proc = subprocess.Popen([console_script("magma-ros"), "finetune", *args, "--out", str(out)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def steps_done() -> int:
        metrics = work / "metrics.jsonl"
        return sum('"loss"' in line for line in metrics.read_text().splitlines()) if metrics.is_file() else 0

    wait_until(lambda: steps_done() >= 2 or proc.poll() is not None, 300, "no training step logged")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert not out.exists()
    checkpoints = list((work / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 1 and f"continue with --resume {checkpoints[0]}" in err
    assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "trainer_state.json"} <= \
        {p.name for p in checkpoints[0].iterdir()}
    code, err = finetune(capsys, *args, "--out", out, "--resume", work, "--quantization", "nf4", "--quiet")
    assert code == 2 and "--quantization 'none' there, 'nf4' now" in err, err  # the base must load as it did
    code, err = finetune(capsys, *args, "--out", out, "--resume", work, "--quiet")
    assert code == 0, err
    c = adapter_weights(out)
    assert all((a[k] == c[k]).all() for k in a), "the resumed run differs from the uninterrupted one"
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert losses == [json.loads(line)["loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]


def test_unfinished_run_is_in_the_way_of_a_fresh_one(task, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "out.partial").mkdir()
    code, err = finetune(capsys, *base_args(task, out))
    assert code == 2 and f"continue it with --resume {tmp_path / 'out.partial'}" in err
