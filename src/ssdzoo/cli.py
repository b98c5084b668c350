"""`ssdzoo <command>`: argument parsing only. Each command is a module of `ssdzoo.commands` with
``HELP``, ``add_arguments(parser)`` and ``run(args) -> exit status``; the work happens in the
modules those call."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .atomic import WriteError
from .engine.preemption import TrainingInterrupted

# command -> module in ssdzoo.commands, in the order `ssdzoo --help` lists them
COMMANDS = {
    "info": "info", "train": "train", "eval": "evaluate", "convert": "convert", "prepare": "prepare",
    "synth": "synth", "show": "show", "predict": "predict", "demo": "demo", "export": "export",
    "benchmark": "benchmark",
}


def _command(name: str):
    return importlib.import_module(f".commands.{COMMANDS[name]}", __package__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssdzoo", description="SSD object detection on timm backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command = _command(name)
        command.add_arguments(sub.add_parser(name, help=command.HELP, description=command.HELP))
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments; ``key=value`` overrides may come before or after options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        return build_parser().parse_args(argv)  # help, or an error listing the commands
    command = _command(argv[0])
    sub = argparse.ArgumentParser(prog=f"ssdzoo {argv[0]}", description=command.HELP)
    command.add_arguments(sub)
    nested = any(isinstance(action, argparse._SubParsersAction) for action in sub._actions)
    parse = sub.parse_args if nested else sub.parse_intermixed_args  # intermixed can't take subcommands
    return argparse.Namespace(command=argv[0], **vars(parse(argv[1:])))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _command(args.command).run(args) or 0
    except (ValueError, FileNotFoundError, FileExistsError, WriteError) as err:  # ConfigError is a ValueError
        print(f"ssdzoo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:  # SIGTERM or Ctrl-C: a checkpoint was saved (the demo)
        print(f"ssdzoo {args.command}: {stop}", file=sys.stderr)
        return stop.exit_status
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it
        print(f"\nssdzoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as err:
        from .engine.train import NonFiniteLossError  # here, so that the CLI starts without torch

        if not isinstance(err, NonFiniteLossError):
            raise
        print(f"ssdzoo {args.command}: error: {err}", file=sys.stderr)  # the run diverged
        return 1


if __name__ == "__main__":
    sys.exit(main())
