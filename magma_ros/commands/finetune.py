"""Fine-tune Magma on your robot's bags with LoRA, on the frames `magma-ros eval` reads.

Each image frame (with its instruction and the recorded action that follows it, read exactly as
`magma-ros eval` reads them) becomes one example: the input the magma backend sends for that frame,
followed by the action's 7 token ids (encoded with the robot profile's statistics) and the
end-of-turn token; the loss covers that answer only. Episodes split on instruction change; the
validation episodes (--val-bags, or --val-fraction of the episodes) are scored with the
evaluator's metrics. Writes into OUT.partial and renames it to OUT at the end:

  OUT/                 the merged model, a complete checkpoint in the official Magma layout
                       (every non-weight file of the base, safetensors shards + index), in full
                       precision also after QLoRA (--quantization: base dequantized + adapter)
  OUT/adapter/         the LoRA adapter in peft's format
  OUT/robot.yaml       the robot profile used for training
  OUT/metrics.jsonl    loss, learning rate and samples/s per step; validation summaries
  OUT/training.png     loss and validation accuracy

Ctrl-C saves a checkpoint (exit 130); --resume OUT.partial continues. Every option can also be
given in a YAML file (--config; names as below with '_' or '-'); the command line wins.

examples:
  magma-ros finetune --model /models/Magma-8B --bags bags/day1 bags/day2 --robot my_arm.yaml \\
      --action-topic /teleop/action --out magma_my_arm
  magma-ros finetune --config finetune.yaml --device cuda:1 --epochs 5
  magma-ros finetune --model /models/Magma-8B --quantization nf4 --bags bags/day1 --robot my_arm.yaml \\
      --action-topic /teleop/action --out magma_my_arm     # QLoRA: the adapter trains on the 4-bit base
  magma-ros eval bags/held_out --backend magma --model magma_my_arm --robot magma_my_arm/robot.yaml \\
      --action-topic /teleop/action
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..options import Option
from ..options import add_arguments as add_options
from ..policy.config import BACKEND_OPTIONS
from .eval import INPUT_OPTIONS, TRUTH_OPTIONS, _source

HELP = "fine-tune Magma with LoRA on your robot's bags: a model for the node, serve and eval"
MODEL_OPTIONS = ("model", "revision", "device", "dtype", "attn_implementation", "quantization")
ROBOT_OPTION = Option("robot", None, "robot profile name or YAML path: statistics for encoding the actions, image "
                      "size and prompt template (compute one from your bags with magma-ros stats)", type=str)
LIST_FLAGS = {"bags": "--bags", "val_bags": "--val-bags"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros finetune``."""
    from ..train.settings import DATA_OPTIONS, LORA_OPTIONS, OPTIMIZER_OPTIONS, OUTPUT_OPTIONS

    parser.add_argument("--bags", nargs="+", type=Path, default=[], metavar="BAG",
                        help="training bags (rosbag2 directories, or .mcap/.db3 files)")
    parser.add_argument("--val-bags", dest="val_bags", nargs="+", type=Path, default=[], metavar="BAG",
                        help="held-out bags for validation (instead of --val-fraction)")
    add_options(parser, (ROBOT_OPTION,))
    parser.add_argument("--out", type=Path, default=None, help="output directory (must not exist)")
    parser.add_argument("--config", type=Path, default=None, help="YAML file with any of these options")
    model = parser.add_argument_group("base model (the magma backend's options)")
    add_options(model, [o for o in BACKEND_OPTIONS if o.name in MODEL_OPTIONS], dtype=None)
    for action in parser._actions:
        if action.dest == "dtype":
            action.help = "torch dtype of the base weights (default: bfloat16 on CUDA, float32 on the CPU)"
    add_options(parser.add_argument_group("input topics"), INPUT_OPTIONS)
    add_options(parser.add_argument_group("ground truth (one form)"), TRUTH_OPTIONS)
    add_options(parser.add_argument_group("data"), DATA_OPTIONS)
    add_options(parser.add_argument_group("LoRA"), LORA_OPTIONS)
    add_options(parser.add_argument_group("optimization"), OPTIMIZER_OPTIONS)
    add_options(parser.add_argument_group("validation and output"), OUTPUT_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Check the options, then train."""
    from ..actions.profiles import load_profile
    from ..policy.config import BackendConfig
    from ..train.dataset import BagInput
    from ..train.run import FinetuneRequest, finetune
    from ..train.settings import TrainSettings

    if args.config is not None:
        apply_config(args, args.config)
    for name, flag in (("model", "--model"), ("robot", "--robot"), ("out", "--out")):
        if not getattr(args, name):
            raise UserError(f"give {flag} (or {name}: in --config)")
    if not args.bags:
        raise UserError("give --bags BAG [BAG ...] (or bags: in --config)")
    profile = load_profile(args.robot)
    dt = args.control_period if args.control_period is not None else profile.control_period_s
    truth = _source(args.action_topic, args.twist_topic, args.gripper_topic, dt, "", required=True)
    source = BagInput(args.image_topic, None if args.instruction else args.instruction_topic, args.instruction,
                      truth, args.max_delay)
    device = args.device
    dtype = args.dtype or ("float32" if device == "cpu" else "bfloat16")
    if device == "cpu" and dtype != "float32":
        raise UserError(f"--dtype {dtype}: training on the CPU runs in float32")
    backend = BackendConfig(backend="magma", model=args.model, revision=args.revision, device=device, dtype=dtype,
                            attn_implementation=args.attn_implementation, quantization=args.quantization)
    request = FinetuneRequest(backend=backend, bags=tuple(args.bags), val_bags=tuple(args.val_bags), profile=profile,
                              profile_file=Path(profile.source), source=source, out=args.out,
                              settings=TrainSettings.from_mapping(vars(args)))
    return finetune(request, sys.stderr)


def apply_config(args: argparse.Namespace, path: Path) -> None:
    """Fill every option not given on the command line from the YAML mapping in ``path``."""
    import yaml

    parser: argparse.ArgumentParser = args._parser
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"--config {path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"--config {path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a mapping of option names to values")
    flags = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    argv: list[str] = []
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in flags:
            raise UserError(f"--config {path}: {key}: unknown option (see magma-ros finetune --help)")
        argv += _as_argv(flags[dest], value)

    def fail(message: str) -> Any:
        raise UserError(f"--config {path}: {message}")

    original = parser.error
    parser.error = fail  # type: ignore[method-assign]
    try:
        configured = parser.parse_args(argv)
    finally:
        parser.error = original  # type: ignore[method-assign]
    for dest in {str(k).replace("-", "_") for k in data}:
        if getattr(args, dest) == parser.get_default(dest):  # not given on the command line
            setattr(args, dest, getattr(configured, dest))


def _as_argv(action: argparse.Action, value: Any) -> list[str]:
    flag = next(s for s in action.option_strings if s.startswith("--"))
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise UserError(f"{flag.lstrip('-')}: expected true or false, got {value!r}")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [flag if value else "--no-" + flag[2:]]
        return [flag] if value else []
    if action.dest in LIST_FLAGS:
        values = value if isinstance(value, list) else [value]
        return [flag, *map(str, values)]
    if isinstance(value, list):
        return [flag, ",".join(map(str, value))]
    return [f"{flag}={value}"]
