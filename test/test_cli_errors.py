"""The failure table of the ``magma-ros`` commands: every user error is one line on stderr that
starts with ``magma-ros COMMAND: error:`` and names the problem, and the exit status is 2."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from magma_ros.actions.profiles import resolve_profile_path
from magma_ros.cli import main
from magma_ros.eval.sample_bag import ACTION_TOPIC, SampleSpec, write_sample_bag

FIXED = ["--backend", "fixed", "--fixed-action", "0,0,0,0,0,0,1"]
STATS_HEAD = '{"mask": [true, true, true, true, true, true, false], '


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    good = write_sample_bag(root / "good", SampleSpec(frames=4, episodes=1))
    cut = write_sample_bag(root / "cut", SampleSpec(frames=4, episodes=1))
    (mcap,) = [p for p in cut.iterdir() if p.suffix == ".mcap"]
    mcap.write_bytes(mcap.read_bytes()[:8])  # only the magic left
    paths = {"good": good, "cut": cut, "cut_file": mcap, "file": root / "a_file"}
    paths["file"].write_text("not a directory")
    texts = {
        "latin1.yaml": "mask: [true]\n# caf\xe9\n".encode("latin-1"),
        "digits.json": (STATS_HEAD + '"q01": [' + "9" * 400 + ', 0, 0, 0, 0, 0, 0], "q99": [1, 1, 1, 1, 1, 1, 1]}')
        .encode(),
        "digits.yaml": ("mask: [true, true, true, true, true, true, false]\nq01: [-" + "9" * 400 +
                        ", 0, 0, 0, 0, 0, 0]\nq99: [1, 1, 1, 1, 1, 1, 1]\n").encode(),
        "span.json": (STATS_HEAD + '"q01": [-1e308, 0, 0, 0, 0, 0, 0], "q99": [1e308, 1, 1, 1, 1, 1, 1]}').encode(),
        "deep.json": ("[" * 20_000 + "]" * 20_000).encode(),
        "deep.yaml": ("[" * 20_000 + "]" * 20_000).encode(),
    }
    for name, data in texts.items():
        (root / name).write_bytes(data)
        paths[name.replace(".", "_")] = root / name
    profile = yaml.safe_load(resolve_profile_path("bridge_orig").read_text())
    for name, key, value in (("rate_digits", "control_rate_hz", 10**400), ("rate_tiny", "control_rate_hz", 1e-320)):
        (root / f"{name}.yaml").write_text(yaml.safe_dump({**profile, key: value}))
        paths[name] = root / f"{name}.yaml"
    (root / "gripper_digits.yaml").write_text(yaml.safe_dump(
        {**profile, "gripper": {**profile["gripper"], "threshold": 10**400}}))
    paths["gripper_digits"] = root / "gripper_digits.yaml"
    nested = root / "nested_bag"
    nested.mkdir()
    (nested / "metadata.yaml").write_text("[" * 20_000 + "]" * 20_000)
    paths["nested_bag"] = nested
    paths["root"] = root
    return paths


def _ids(*ids: str) -> list[str]:
    return ["decode", "--robot", "bridge_orig", "--ids=" + ",".join(ids)]


def _stats(name: str) -> list[str]:
    return ["decode", "--stats", "{%s}" % name, "--ids", "127843,127876,127917,127872,127852,127874,127872"]


def _eval(*extra: str, bag: str = "{good}") -> list[str]:
    return ["eval", bag, "--action-topic", ACTION_TOPIC, "--quiet", "--no-plots", *FIXED, *extra]


FAILURES = {
    # decode
    "26-digit id": (_ids("1" * 26, "1", "2", "3", "4", "5", "6"),
                    "--ids: 11111111111111111111111111 is not a token id"),
    "negative id": (_ids("-5", "1", "2", "3", "4", "5", "6"), "--ids: -5 is not a token id"),
    "ids not numbers": (_ids("a", "b"), "--ids: expected comma-separated integers"),
    "vocab size": (_ids("1") + ["--vocab-size", "3"], "--vocab-size: must be in 256..2**31-1"),
    "stats not UTF-8": (_stats("latin1_yaml"), "latin1.yaml: not UTF-8 text"),
    "stats 400-digit JSON": (_stats("digits_json"), "digits.json.q01[0]: number too large for a float"),
    "stats 400-digit YAML": (_stats("digits_yaml"), "digits.yaml.q01[0]: number too large for a float"),
    "stats span overflows": (_stats("span_json"), "overflows"),
    "stats nested JSON": (_stats("deep_json"), "deep.json: JSON nested too deeply"),
    "stats nested YAML": (_stats("deep_yaml"), "deep.yaml: YAML nested too deeply"),
    "stats missing": (["decode", "--stats", "{root}/absent.yaml", "--ids", "1"], "cannot read stats file"),
    "profile not UTF-8": (["decode", "--robot", "{latin1_yaml}", "--ids", "1"], "latin1.yaml: not UTF-8 text"),
    "profile nested": (["decode", "--robot", "{deep_yaml}", "--ids", "1"], "deep.yaml: YAML nested too deeply"),
    "profile 400-digit rate": (["decode", "--robot", "{rate_digits}", "--ids", "1"],
                               "control_rate_hz: number too large for a float"),
    "profile tiny rate": (["decode", "--robot", "{rate_tiny}", "--ids", "1"],
                          "control_rate_hz: must be positive (and its inverse finite)"),
    "profile 400-digit gripper": (["decode", "--robot", "{gripper_digits}", "--ids", "1"],
                                  "gripper.threshold: number too large for a float"),
    # eval
    "eval MCAP cut to its magic": (_eval("--out", "{root}/o1", bag="{cut}"), "truncated or corrupt"),
    "eval .mcap file cut to its magic": (_eval("--out", "{root}/o2", bag="{cut_file}"), "truncated or corrupt"),
    "eval nested metadata.yaml": (_eval("--out", "{root}/o6", bag="{nested_bag}"), "cannot open"),
    "eval --out is a file": (_eval("--out", "{file}"), "output directory"),
    "eval --out impossible": (_eval("--out", "{file}/sub"), "cannot create"),
    "eval --control-period inf": (_eval("--out", "{root}/o3", "--control-period", "inf"),
                                  "--control-period must be a finite number > 0, got inf"),
    "eval --control-period nan": (_eval("--out", "{root}/o4", "--control-period", "nan"),
                                  "--control-period must be a finite number > 0"),
    "eval --max-delay inf": (_eval("--out", "{root}/o5", "--max-delay", "inf"), "--max-delay must be a finite number"),
    # replay
    "replay MCAP cut to its magic": (["replay", "{cut}", "--out", "{root}/r1"], "truncated or corrupt"),
    "replay nested metadata.yaml": (["replay", "{nested_bag}", "--out", "{root}/r4"], "cannot open"),
    "replay --out is a file": (["replay", "{good}", "--out", "{file}"], "already exists"),
    "replay --out impossible": (["replay", "{good}", "--out", "{file}/sub/bag"], "is not an existing directory"),
    "replay --rate inf": (["replay", "{good}", "--out", "{root}/r2", "--rate", "inf"], "--rate must be a finite"),
    "replay --tail nan": (["replay", "{good}", "--out", "{root}/r3", "--tail", "nan"], "--tail must be a finite"),
    "replay bad publish topic": (["replay", "{good}", "--out", "{root}/r5", "--publish-image-topic", "bad topic"],
                                 "--publish-image-topic 'bad topic': Invalid topic name"),
    "replay bad --ros-args": (["replay", "{good}", "--out", "{root}/r6", "--wait-node", "1", "--ros-args", "-p"],
                              "--ros-args: Couldn't parse trailing -p flag"),
    # record
    "record bad --ros-args": (["record", "--out", "{root}/b2", "--duration", "1", "--ros-args", "--remap"],
                              "--ros-args: Couldn't parse trailing --remap flag"),
    "record --out is a file": (["record", "--out", "{file}", "--duration", "1"], "already exists"),
    "record --out impossible": (["record", "--out", "{file}/sub", "--duration", "1"], "is not an existing directory"),
    "record --duration inf": (["record", "--out", "{root}/b1", "--duration", "inf"], "--duration must be a finite"),
    # serve options (checked before any model or tokenizer is loaded)
    "serve --timeout-s inf": (["serve", "--no-model", "--timeout-s", "inf"], "timeout_s: must be > 0"),
    "serve --port 70000": (["serve", "--no-model", "--port", "70000"], "port: must be 1..65535"),
    "serve --queue-depth 0": (["serve", "--no-model", "--queue-depth", "0"], "queue_depth: must be >= 1"),
    "serve --max-json-depth 0": (["serve", "--no-model", "--max-json-depth", "0"], "max_json_depth: must be >= 1"),
    "serve --max-text-chars 0": (["serve", "--no-model", "--max-text-chars", "0"], "max_text_chars: must be >= 1"),
    "serve --max-image-pixels 0": (["serve", "--no-model", "--max-image-pixels", "0"],
                                   "max_image_pixels: must be >= 1"),
    "serve --max-batch-size 0": (["serve", "--no-model", "--max-batch-size", "0"], "max_batch_size: must be in 1..256"),
    "serve --batch-window-ms -1": (["serve", "--no-model", "--batch-window-ms", "-1"],
                                   "batch_window_ms: must be in 0..1000"),
    "serve --batch-window-ms nan": (["serve", "--no-model", "--batch-window-ms", "nan"],
                                    "batch_window_ms: must be in 0..1000"),
    "serve --robot-id 'a b'": (["serve", "--no-model", "--robot-id", "a b"], "robot_id: 1 to 128 characters"),
    "fleet missing file": (["fleet", "{root}/no_such_fleet.yaml", "--check"], "no_such_fleet.yaml: cannot read"),
}


@pytest.mark.parametrize("args,message", FAILURES.values(), ids=FAILURES.keys())
def test_user_errors_are_one_line_and_exit_2(files, capsys, args, message):
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith(f"magma-ros {argv[0]}: error: "), captured.err
    assert message in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_text_argument_that_is_not_utf8(console_script, llama3_tokenizer_path):
    """The operating system hands Python the raw bytes; they must not become a traceback."""
    result = subprocess.run([os.fsencode(console_script("magma-ros")), b"decode", b"--robot", b"bridge_orig",
                             b"--tokenizer", os.fsencode(str(llama3_tokenizer_path)), b"\xff\xfe act"],
                            capture_output=True, timeout=60)
    err = result.stderr.decode("utf-8", "replace").strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert err[0] == "magma-ros decode: error: TEXT: not valid UTF-8 (pass the action text exactly as the model " \
                     "generated it)"


def test_ctrl_c_while_the_commands_are_imported_exits_130_without_a_traceback(monkeypatch, capsys):
    import magma_ros.cli as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["stats", "--help"]) == 130
    assert capsys.readouterr().err == ""
