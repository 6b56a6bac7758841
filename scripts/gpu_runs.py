"""Time-boxed long runs on a lent CUDA machine: several trainings at once, checkpoints back.

A device call lasts at most 10 minutes and a session gets 15, while a results row can need an
hour of GPU time. This script starts every requested run at once (each its own process, all on
the one GPU), stops the ones still going at ``--seconds`` (their last checkpoint is atomic, so
nothing is lost), evaluates the ones that finished with their row's ``eval_command``, and leaves
under ``--out`` one folder per run with the resolved config, the metrics CSV, the last
checkpoint, the eval files and ``gpu_run.json`` (command, exit code, seconds, last
checkpoint, machine), and beside it the run's logs. A later call continues a run with
``--resume`` from ``PROGRESS/NAME/`` (``--progress``, default ``runs-in-progress``; ``results``
continues a committed row's run from its final checkpoint; with several folders the first that
holds a checkpoint of ``NAME`` is used).

A run is a row of ``results/reproduce.yaml`` (``NAME``: its command) or ``NAME=COMMAND`` (a row's
name keeps the row's ``eval_command``). Every command gets ``--device cuda --run-dir OUT/NAME``
appended (or the ``--device`` given)::

    run(carry=[".whl/site-cp312.tar.xz", ".whl/omniglot", ".whl/manifest.json"],
        command='PY=$(command -v python3.12 || command -v python3); '
                '$PY scripts/gpu_runs.py --out /tmp/r --seconds 400 protonet-omniglot_5w1s; '
                'cd /tmp && tar -czf - r | split -b 12M - $OUT/runs.tgz.part_',
        timeout_s=560)

(a file that comes back may be at most 16 MB, hence the split; ``cat runs.tgz.part_* | tar -xzf
-`` here). The working tree and the carry must fit in 64 MiB together: ``python
scripts/slim_tree.py --keep FOLDER...`` takes the committed results out of the working tree
before the call but the folders a run resumes from, ``--restore`` after it. Here, ``python
scripts/gpu_runs.py --device cpu --no-bundle --seconds 20 NAME=COMMAND`` runs the same path on the
CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_check import log, prepare_env, run_step, stage_env  # noqa: E402

MANIFEST = ROOT / "results" / "reproduce.yaml"
IN_PROGRESS = ROOT / "runs-in-progress"


def parse_run(spec: str, rows: dict) -> tuple[str, list[str], list[str] | None]:
    """``NAME`` or ``NAME=COMMAND`` -> (name, metarl arguments, eval arguments or None)."""
    name, sep, command = spec.partition("=")
    if not sep:
        if name not in rows:
            raise SystemExit(
                f"gpu_runs: {name!r} is not a row of {MANIFEST.name}; use NAME=COMMAND"
            )
        command = rows[name]["command"]
    words = shlex.split(command)
    if words[:2] != ["metarl", "train"]:
        raise SystemExit(f"gpu_runs: {name}: the command must start with 'metarl train'")
    evaluate = rows.get(name, {}).get("eval_command")
    return name, words[1:], shlex.split(evaluate)[1:] if evaluate else None


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "checkpoints").glob("checkpoint_*.pt"))


def seed_from_progress(saved: Path, run_dir: Path) -> bool:
    """Copies a saved run's config, metrics and last checkpoint into the run folder.

    The saved files lie side by side (as in ``runs-in-progress/``) or the checkpoints under
    ``checkpoints/`` (a run folder, an earlier ``--out``). Returns True when there is a
    checkpoint to resume.
    """
    found = sorted([*saved.glob("checkpoint_*.pt"), *saved.glob("checkpoints/checkpoint_*.pt")])
    if not found:
        return False
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for path in ("config.yaml", "metrics.csv"):
        if (saved / path).is_file():
            shutil.copy2(saved / path, run_dir / path)
    shutil.copy2(found[-1], run_dir / "checkpoints" / found[-1].name)
    return True


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGINT to all (the CLI stops between iterations), then SIGKILL for a group still there."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20.0
    for proc in procs:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="NAME (a results/reproduce.yaml row) or NAME=CMD")
    parser.add_argument(
        "--runs-file", help="more runs, one NAME or NAME=CMD per line ('#' starts a comment)"
    )
    parser.add_argument("--out", required=True, help="one folder per run is written here")
    parser.add_argument("--seconds", type=float, required=True, help="when unfinished runs stop")
    parser.add_argument("--eval-seconds", type=float, default=120.0)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument(
        "--progress",
        nargs="+",
        default=[str(IN_PROGRESS)],
        help="folders of saved runs to resume, one subfolder per NAME; the first that has it wins",
    )
    parser.add_argument("--no-bundle", action="store_true", help="use the installed packages")
    args = parser.parse_args(argv)
    rows = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["runs"]
    specs = list(args.runs)
    if args.runs_file:
        lines = Path(args.runs_file).read_text(encoding="utf-8").splitlines()
        specs += [
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        ]
    if not specs:
        parser.error("no runs: name them on the command line or in --runs-file")
    runs = [parse_run(spec, rows) for spec in specs]
    names = [name for name, _, _ in runs]
    if len(set(names)) != len(names):
        raise SystemExit(f"gpu_runs: a run name is given twice: {names}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = prepare_env(args.no_bundle)
    info = stage_env(out, env, 60.0)["info"] if args.device == "cuda" else {}
    started, procs, ended = time.monotonic(), {}, {}
    for name, train, _ in runs:
        run_dir = out / name
        cmd = [*train, "--device", args.device, "--run-dir", str(run_dir)]
        saved = (Path(folder) / name for folder in args.progress)
        cmd += ["--resume"] if any(seed_from_progress(path, run_dir) for path in saved) else []
        cmd += ["--set", "run.progress=false"]
        with open(out / f"{name}.train.log", "w", encoding="utf-8") as sink:
            sink.write("$ metarl " + shlex.join(cmd) + "\n")
            sink.flush()
            procs[name] = (
                subprocess.Popen(
                    [sys.executable, "-m", "metarl", *cmd],
                    cwd=ROOT,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                cmd,
            )
        log(f"{name}: started ({'resumed' if '--resume' in cmd else 'from scratch'})")
    while any(p.poll() is None for p, _ in procs.values()):
        for name, (proc, _) in procs.items():
            if proc.poll() is not None:
                ended.setdefault(name, time.monotonic() - started)
        if time.monotonic() - started > args.seconds:
            going = {name: proc for name, (proc, _) in procs.items() if proc.poll() is None}
            log(f"stopping at the time box: {', '.join(going)}")
            stop(list(going.values()))
            break
        time.sleep(2.0)
    for name, _, evaluate in runs:
        proc, cmd = procs[name]
        run_dir = out / name
        record = {"command": "metarl " + shlex.join(cmd), "rc": proc.returncode}
        record["seconds"] = round(ended.get(name, time.monotonic() - started), 1)
        record["finished"] = proc.returncode == 0 and (run_dir / "eval").is_dir()
        if record["finished"] and evaluate:
            eval_cmd = [*[str(run_dir) if w == "RUN" else w for w in evaluate]]
            eval_cmd += ["--device", args.device]
            record["eval_command"] = "metarl " + shlex.join(eval_cmd)
            # run_step kills the eval's whole process group at the timeout and returns "timeout"
            # as its rc, so a slow eval costs neither the other runs' records nor stray workers
            done = run_step(
                [sys.executable, "-m", "metarl", *eval_cmd],
                args.eval_seconds,
                env,
                out / f"{name}.eval.log",
            )
            record["eval_rc"] = done["rc"]
        kept = checkpoints(run_dir)
        for path in kept[:-1]:
            path.unlink()
        record["last_checkpoint"] = kept[-1].name if kept else None
        record["machine"] = info
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "gpu_run.json").write_text(json.dumps(record, indent=1) + "\n")
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
        log(f"{name}: rc {proc.returncode}, last checkpoint {record['last_checkpoint']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
