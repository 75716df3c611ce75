"""``magma-ros``: the command-line entry point. Subcommands live in ``magma_ros.commands``."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .actions.errors import ActionContractError
from .errors import UserError
from .policy.base import PolicyConfigError, PolicyError

# subcommand name -> module under magma_ros.commands
COMMANDS: dict[str, str] = {
    "decode": "decode",
    "sim-eval": "sim_eval",
    "eval": "eval",
    "stats": "stats",
    "record": "record",
    "replay": "replay",
    "serve": "serve",
    "fleet": "fleet",
    "finetune": "finetune",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="magma-ros",
        description="Magma vision-language-action tools for ROS 2 robot arms.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"magma_ros.commands.{module_name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _parser=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; user errors exit 2 with one line on stderr; Ctrl-C exits 130 quietly,
    also while the commands' modules are still being imported."""
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return 130
    try:
        return int(args._run(args) or 0)
    except (UserError, ActionContractError, PolicyConfigError) as exc:
        print(f"magma-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except PolicyError as exc:
        print(f"magma-ros {args.command}: backend error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file the user named cannot be read or written (disk full, permissions, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"magma-ros {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
