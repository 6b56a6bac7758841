"""The ``metarl`` command line: argument parsing and wiring only, no logic worth testing.

- ``metarl envs``: every registered task env with its task parameters and ranges.
- ``metarl train CONFIG [--set k=v ...] [--run-dir DIR] [--device D] [--seed N] [--resume]
  [--init-from CHECKPOINT]``:
  meta-trains, checkpoints, then evaluates few-shot adaptation on held-out tasks. On several
  ranks: ``torchrun --nproc-per-node N -m metarl train ...``, or ``--nproc N [--nnodes M
  --rdzv-endpoint HOST:PORT]``, which starts the same ranks through torch's launcher
  (:mod:`metarl.launch`); rank 0 writes and prints.
- ``metarl eval RUN_DIR [--num-tasks N] [--steps K] [--out FILE] [--set eval.KEY=VALUE ...]``:
  evaluates a run's latest intact checkpoint and writes the adaptation curve as JSON, CSV and PNG;
  ``--set`` changes how it is evaluated (e.g. a longer oracle), never what was trained.
- ``metarl data omniglot [--root DIR]``: downloads the Omniglot archives and verifies them.

Every expected failure ends in one line on stderr, ``error: what is wrong; what to do``, and exit
code 2 for bad input (config, arguments, run directory, checkpoint file) or 1 for a failure while
running (NaN stop, worker crash, disk full, permissions); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import pickle
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["EXIT_BAD_INPUT", "EXIT_RUNTIME", "build_parser", "main"]

EXIT_RUNTIME = 1
"""Exit code of a failure while running (NaN stop, worker crash, disk full, permissions)."""
EXIT_BAD_INPUT = 2
"""Exit code of bad input: a config, an argument, a run directory or a checkpoint file."""


class _Failure(Exception):
    """An expected failure, already worded for the command line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


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


def _seed_everything(seed: int, num_threads: int = 0) -> None:
    """Seeds the global RNGs once and sets torch's thread count, at the entry point.

    Also keeps freed memory in the process (:mod:`metarl.memory`): training allocates large
    tensors over and over, and fresh pages cost a page fault each.
    """
    import numpy as np
    import torch

    from metarl.memory import keep_freed_memory

    keep_freed_memory()
    if num_threads:
        torch.set_num_threads(num_threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _print_curve(path: Path) -> None:
    result = json.loads(path.read_text())
    extra = result.get("extra") or {}
    trials = "trial_return" in extra  # RL²: the x axis is the episode index within a trial
    print(
        f"\n{result['algorithm']} on {result['task_family']}: {result['metric']} on "
        f"{result['num_tasks']} held-out tasks (mean ± 95% CI)"
    )

    def text(value: float | None, digits: int = 4) -> str:
        return "nan" if value is None else f"{value:.{digits}f}"

    rows = list(zip(result["steps"], result["mean"], result["ci95"], strict=True))
    if len(rows) > 20:  # long trials: the first episodes, then every tenth of the trial
        keep = {*range(5), *range(0, len(rows), len(rows) // 10), len(rows) - 1}
        rows = [rows[i] for i in sorted(keep)]
    for step, mean, ci in rows:
        label = f"episode {step + 1:3d} of the trial" if trials else f"after {step:2d} steps"
        print(f"  {label}: {text(mean)} ± {text(ci)}")
    if trials:
        print("  total return of a trial:")
        for name, value in extra["trial_return"].items():
            print(f"    {name:15s} {text(value['mean'], 3)} ± {text(value['ci95'], 3)}")
        if (paired := extra.get("trial_return_paired")) is not None:
            print(f"  {paired['curve']}'s trial return minus each other's, paired on the task:")
            for name, value in paired["minus"].items():
                print(f"    {name:15s} {value['mean']:+.3f} ± {text(value['ci95'], 3)}")
        if (rise := extra.get("last_minus_first")) is not None:
            first, last = rise["episodes"]
            print(
                f"  episode {last} minus episode {first}, paired on the task: "
                f"{rise['mean']:+.4f} ± {text(rise['ci95'])}"
            )
    else:
        for name, curve in (result.get("baselines") or {}).items():
            means = ", ".join(text(m, 3) for m in curve["mean"])
            print(f"  {name}: {means}")
    success = extra.get("success") or {}  # envs that report info["success"] (Meta-World)
    for label, table in (
        ("all tasks", success.get("overall", {})),
        ("", success.get("per_class", {})),
    ):
        for name, curve in table.items():
            pairs = zip(curve["mean"], curve["ci95"], strict=True)
            means = ", ".join(f"{text(m, 3)} ± {text(c, 3)}" for m, c in pairs)
            print(f"  success rate, {name}{f' ({label})' if label else ''}: {means}")
    print(f"written: {path}")


def _load(config_path: str | Path, overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """Loads a config with the experiment kind its ``algo.name`` belongs to."""
    from metarl.algorithms import experiment_kind
    from metarl.config import load_config

    kind = experiment_kind(config_path)
    return kind, load_config(kind.CONFIG_CLASS, config_path, overrides)


def load_run_config(config_path: Path, overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """Loads a run directory's config.yaml, migrating keys an older version wrote.

    ``overrides`` are dotted ``key=value`` strings applied after the migration.
    """
    from metarl.algorithms import experiment_kind
    from metarl.config import apply_overrides, load_config, load_yaml
    from metarl.config_renames import migrate_config

    kind = experiment_kind(config_path)
    raw = load_yaml(config_path.read_text(encoding="utf-8")) or {}
    data, notes = migrate_config(kind.CONFIG_CLASS, raw)
    if notes:
        shown = ", ".join(notes[:3]) + (f", and {len(notes) - 3} more" if len(notes) > 3 else "")
        print(
            f"warning: {config_path} was written by an older version; read with the current "
            f"keys ({shown})",
            file=sys.stderr,
        )
    return kind, load_config(kind.CONFIG_CLASS, apply_overrides(kind.CONFIG_CLASS, data, overrides))


def _eval_overrides(overrides: Sequence[str]) -> list[str]:
    """``metarl eval --set``: only the ``eval.`` section, which the trained weights never saw.

    Raises:
        ConfigError: Naming the first override outside it, before anything is loaded.
    """
    from metarl.config import ConfigError

    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("eval."):
            raise ConfigError(
                [
                    f"--set {item}: metarl eval changes only eval.* settings (how the run is "
                    f"evaluated); {key or 'the key'} belongs to what the checkpoint was trained "
                    "with (metarl train --set changes it)"
                ]
            )
    return list(overrides)


def _launch(args: argparse.Namespace, overrides: Sequence[str], timeout_s: float) -> int:
    """``--nproc N``: the same ``train`` command on N ranks, through torch's elastic launcher."""
    from metarl.launch import LaunchSpec, RankFailedError, launch

    spec = LaunchSpec(args.nproc or 1, args.nnodes, args.rdzv_endpoint, timeout_s)
    worker = ["-v"] if args.verbose else []
    worker += ["train", args.config, *(f"--set={item}" for item in overrides)]
    worker += ["--debug"] if args.debug else []
    try:
        launch(spec, worker, verbose=args.verbose)
    except RankFailedError as err:
        if err.reported:  # rank 0 printed its own one-line error
            return err.exitcode
        raise _Failure(str(err), err.exitcode) from err
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from metarl import distributed
    from metarl.algorithms import preflight
    from metarl.device import get_device
    from metarl.runs import NonFiniteLossError

    overrides = list(args.set)
    if args.run_dir:
        overrides.append(f"run.run_dir={json.dumps(args.run_dir)}")
    if args.device:
        overrides.append(f"run.device={args.device}")
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.resume:
        overrides.append("run.resume=true")
    if args.init_from:
        overrides.append(f"run.init_from={json.dumps(args.init_from)}")
    if args.data_root:
        overrides.append(f"task.data_root={json.dumps(args.data_root)}")
    kind, cfg = _load(args.config, overrides)
    if args.nproc is not None or args.nnodes > 1:
        return _launch(args, overrides, cfg.run.collective_timeout)
    device = distributed.local_device(get_device(cfg.run.device))
    world = distributed.init(device, cfg.run.collective_timeout)  # one rank without torchrun
    try:
        preflight(kind, cfg, device)
        _seed_everything(cfg.run.seed, cfg.run.num_threads)
        if world.is_main:
            ranks = f" x {world.size} ranks" if world.distributed else ""
            print(
                f"training {cfg.algo.name} ({args.config}) on {device}{ranks}; run directory "
                f"{cfg.run.run_dir}"
            )
        try:
            path = kind.train_from_config(cfg, device)
        except NonFiniteLossError as err:
            raise _Failure(_nan_stop_message(err, Path(cfg.run.run_dir)), EXIT_RUNTIME) from err
        if world.is_main:
            _print_curve(path)
        if world.distributed:
            distributed.finish_rank()  # exits: tearing gloo down can abort a peer
    finally:
        distributed.shutdown()
    return 0


def _nan_stop_message(err: Exception, run_dir: Path) -> str:
    """The NaN-stop message, completed with what the run directory really holds."""
    from metarl.checkpoint import checkpoint_iteration, latest_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return (
            f"{err}; no checkpoint was saved before it, so there is no good state to keep: "
            "lower the learning rate (or clip gradients) and train again with --resume (with no "
            f"checkpoint in {run_dir} it starts over)"
        )
    return (
        f"{err}; the last good state is {latest} (iteration {checkpoint_iteration(latest)}), "
        f"which 'metarl eval {run_dir}' evaluates: lower the learning rate (or clip gradients) "
        "and train again in a new run directory"
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    import dataclasses

    from metarl.algorithms import preflight
    from metarl.checkpoint import final_checkpoint, latest_intact_checkpoint
    from metarl.device import get_device
    from metarl.kinds import evaluate_checkpoint

    overrides = _eval_overrides(args.set)
    run_dir = Path(args.run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {run_dir} a metarl run directory?")
    kind, cfg = load_run_config(config_path, overrides)
    device = get_device(args.device or cfg.run.device)
    ckpt = latest_intact_checkpoint(run_dir)  # Warns naming each damaged newer checkpoint.
    if ckpt is None:  # a results/ folder keeps its final checkpoint beside config.yaml
        ckpt = final_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint in {run_dir} or {run_dir}/checkpoints")
    if args.num_tasks is not None:  # The evaluation's env sizes follow the task count.
        cfg = dataclasses.replace(
            cfg, run=dataclasses.replace(cfg.run, num_eval_tasks=args.num_tasks)
        )
    preflight(kind, cfg, device)
    _seed_everything(args.seed, cfg.run.num_threads)
    out = Path(args.out) if args.out else run_dir / "eval" / f"eval_{args.split}.json"
    path = evaluate_checkpoint(
        kind,
        cfg,
        ckpt,
        device,
        out=out,
        num_tasks=args.num_tasks,
        steps=args.steps,
        seed=args.seed,
        split=args.split,
    )
    print(f"checkpoint: {ckpt}")
    _print_curve(path)
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other failure of the command."""

    def error(self, message: str) -> NoReturn:
        """Prints ``error: MESSAGE (see 'PROG --help')`` and exits with `EXIT_BAD_INPUT`."""
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see '{self.prog} --help')\n")


def _count(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _cmd_data(args: argparse.Namespace) -> int:
    from envs.supervised import omniglot_fetch

    root = omniglot_fetch.omniglot_download_root(args.root)
    print(f"Omniglot: images_background.zip and images_evaluation.zip into {root}")
    try:
        fetched = omniglot_fetch.download_omniglot(root)
    except omniglot_fetch.OmniglotFetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for item in fetched:
        state = "downloaded" if item.downloaded else "already there"
        print(f"  {item.path}: {state}, verified by {item.verified_by}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Builds the argument parser of the ``metarl`` command."""
    parser = _Parser(
        prog="metarl",
        description="Meta-learning suite: meta-RL and supervised few-shot learners on one core.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of a failure (exit codes stay)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("envs", help="list every registered task env and its task parameters")
    p.add_argument("--filter", default="", help="only ids containing this text")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("train", help="meta-train from a YAML config, then evaluate")
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field by its dotted name, e.g. inner.lr=0.4",
    )
    p.add_argument("--run-dir", help="run directory (overrides run.run_dir)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--seed", type=_count(0), help="seed (overrides run.seed)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--init-from",
        metavar="CHECKPOINT",
        help="start a new run from a checkpoint's state (parameters, optimiser moments, "
        "statistics, iteration) under this config's settings: a second stage of training",
    )
    p.add_argument(
        "--data-root",
        help="Omniglot folder with the two zips, or miniImageNet folder of JPEGs (overrides "
        "task.data_root; default $METARL_OMNIGLOT_ROOT, else ~/.cache/metarl/omniglot: see "
        "'metarl data'; miniImageNet: $METARL_MINIIMAGENET_ROOT)",
    )
    p.add_argument(
        "--nproc",
        type=_count(1),
        help="ranks on this machine, started through torch's launcher (as torchrun "
        "--nproc-per-node N -m metarl train ...): gloo on CPU, one GPU each with --device cuda",
    )
    p.add_argument(
        "--nnodes",
        type=_count(1),
        default=1,
        help="machines; run the same command on each, with --rdzv-endpoint (default 1)",
    )
    p.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="c10d rendezvous every node reaches (default on one machine: a free local port)",
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate few-shot adaptation of a trained run")
    p.add_argument("run_dir", help="run directory written by 'metarl train'")
    p.add_argument(
        "--num-tasks", type=_count(1), help="held-out tasks (default: run.num_eval_tasks)"
    )
    p.add_argument("--steps", type=_count(0), help="adaptation steps (default: eval.steps)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--seed", type=_count(0), default=1, help="seed of the held-out task sample")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="compute device")
    p.add_argument("--out", help="JSON file to write (CSV and PNG go beside it)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="evaluate with another eval setting, e.g. eval.oracle_timesteps=2000000 (only "
        "eval.* keys: the rest is what the checkpoint was trained with)",
    )
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("data", help="download and verify a data set (Omniglot)")
    p.add_argument("dataset", choices=["omniglot"], help="data set to fetch")
    p.add_argument(
        "--root",
        help="destination folder (default $METARL_OMNIGLOT_ROOT, else ~/.cache/metarl/omniglot, "
        "where training looks by default)",
    )
    p.set_defaults(func=_cmd_data)
    for command in (
        sub.choices["envs"],
        sub.choices["train"],
        sub.choices["eval"],
        sub.choices["data"],
    ):
        # Also accepted after the command; SUPPRESS keeps an absent flag from resetting the
        # value given before it.
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser


def _one_line(text: str) -> str:
    """Joins a multi-line message into one line: after a colon with a space, else with "; "."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:
        joined += (" " if joined.endswith(":") else "; ") + line
    return joined


def _expected_failure(err: BaseException) -> tuple[int, str] | None:
    """The exit code and one-line message of an expected failure; None for anything else."""
    import yaml

    from envs import WorkerError
    from metarl.checkpoint import CheckpointError
    from metarl.device import DeviceUnavailableError
    from metarl.distributed import CollectiveError, RankZeroError
    from metarl.launch import PortInUseError, RendezvousFailedError
    from metarl.runs import NonFiniteLossError, RunDirExistsError

    if isinstance(err, _Failure):
        return err.code, str(err)
    if isinstance(err, PortInUseError):
        return EXIT_BAD_INPUT, str(err.strerror)
    if isinstance(err, CollectiveError | RankZeroError | RendezvousFailedError):
        return EXIT_RUNTIME, _one_line(str(err))
    if isinstance(err, NonFiniteLossError):
        return EXIT_RUNTIME, str(err)
    if isinstance(err, WorkerError):  # The worker's traceback: keep its first and last lines.
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        message = lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"
        return EXIT_RUNTIME, f"{message} (an env worker process failed)"
    if isinstance(err, RunDirExistsError):
        where = str(err).split(" already holds", 1)[0].removeprefix("run_dir ")
        return EXIT_BAD_INPUT, (
            f"run directory {where} already holds a run: pass --resume to continue it, or "
            "--run-dir to start another"
        )
    if isinstance(err, PermissionError):
        return (
            EXIT_RUNTIME,
            f"permission denied: {err.filename or err}: choose a writable --run-dir",
        )
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        where = f" writing {err.filename}" if err.filename else ""
        return EXIT_RUNTIME, (
            f"disk full{where}: free space, then continue with --resume (the latest checkpoint "
            "on disk is complete: checkpoints are written to a temporary file first)"
        )
    if isinstance(err, MemoryError):
        return EXIT_RUNTIME, "out of memory: lower task.meta_batch_size or env.meta_batch_size"
    bad_input = (
        ValueError,  # ConfigError, CheckpointError, IncompatibleResumeError
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        IsADirectoryError,
        yaml.YAMLError,
        pickle.UnpicklingError,
        CheckpointError,
        DeviceUnavailableError,
    )
    if isinstance(err, bad_input):
        return EXIT_BAD_INPUT, _one_line(str(err))
    if isinstance(err, OSError):
        return EXIT_RUNTIME, _one_line(str(err))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``metarl`` command line.

    Returns:
        0 on success, `EXIT_RUNTIME` (1) or `EXIT_BAD_INPUT` (2) after a one-line message on
        stderr; 130 when interrupted. With ``--debug`` a failure raises with its traceback.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a bad argument (already reported in one line)
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("error: interrupted; 'metarl train ... --resume' continues a run", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        failure = _expected_failure(err)
        if failure is None:
            code, message = (
                EXIT_RUNTIME,
                (
                    f"unexpected {type(err).__name__}: {_one_line(str(err))} (rerun with --debug "
                    "for the traceback, and please report it)"
                ),
            )
        else:
            code, message = failure
        return _report(err, code, message)


def _report(err: BaseException, code: int, message: str) -> int:
    """Prints ``error: MESSAGE`` on rank 0; the other ranks only report what rank 0 cannot see.

    A failure every rank meets alike (bad input, a NaN stop, rank 0's own failure) is rank 0's
    to report: the other ranks stay silent and give rank 0 a moment to print it before the
    launcher, seeing them exit, stops it. A rank's own failure (a crash) is printed with the
    rank's number. A collective that lost a peer waits a moment first: when the dead rank ran on
    this machine, its launcher stops this rank and names the dead one itself (one line).
    """
    import os
    import time

    from metarl.distributed import CollectiveError, RankZeroError, env_world
    from metarl.runs import NonFiniteLossError

    try:
        rank = env_world().rank
    except ValueError:
        rank = 0
    if isinstance(err, CollectiveError) and "TORCHELASTIC_RUN_ID" in os.environ:
        time.sleep(3.0)
    if rank == 0:
        print(f"error: {message}", file=sys.stderr)
    elif code == EXIT_BAD_INPUT or isinstance(err, RankZeroError | NonFiniteLossError | _Failure):
        time.sleep(5.0)
    else:
        print(f"error: rank {rank}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
