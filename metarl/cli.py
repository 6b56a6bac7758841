"""The ``metarl`` command line: argument parsing and wiring only, no logic worth testing.

Subcommands: ``metarl envs`` lists every registered task env with its task parameters.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _cmd_envs(args: argparse.Namespace) -> int:
    import envs

    for env_id in envs.task_env_ids():
        info = envs.env_info(env_id)
        if args.filter and args.filter.lower() not in env_id.lower():
            continue
        dist = envs.get_task_distribution(env_id)
        horizon = info.max_episode_steps if info.max_episode_steps is not None else "-"
        print(f"{env_id}  (horizon {horizon})")
        for name, spec in dist.describe().items():
            print(f"    {name}: {spec}")
        print(f"    source: {info.source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser of the ``metarl`` command."""
    parser = argparse.ArgumentParser(
        prog="metarl",
        description="Meta-learning suite: meta-RL and supervised few-shot learners on one core.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_envs = sub.add_parser("envs", help="list every registered task env and its task parameters")
    p_envs.add_argument("--filter", default="", help="only ids containing this text")
    p_envs.set_defaults(func=_cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``metarl`` command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
