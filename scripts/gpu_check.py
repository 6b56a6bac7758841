"""One prepared device check: device tests, short trainings and CUDA-vs-CPU speed, in one call.

Three modes:

- ``--prepare`` (here, with the package index reachable): downloads CPython 3.12 manylinux x86_64
  wheels of every runtime and test dependency except torch and what comes with torch, unpacks
  them into one ``site-packages`` folder, packs it as ``.whl/site-cp312.tar.xz`` (xz packs the
  unpacked libraries a third smaller than the wheels do, which is what makes the bundle fit),
  copies the two Omniglot zips to ``.whl/omniglot/`` and writes ``.whl/manifest.json`` with what
  was bundled, what was left out and why, and the size of the carry against its 64 MiB limit.
- ``--dry-run``: installs the downloaded wheels into a scratch ``--target`` folder, checks that
  every requirement of every bundled package is bundled, comes with torch or is left out on
  purpose, checks the packed bundle against the manifest (all skipped when no bundle was
  prepared), and resolves every config the check uses with ``run.device=cuda`` (no GPU needed).
- the check itself (default): stages ``env`` (GPU model, driver, versions, every import),
  ``tests`` (``tests/metarl/test_device_placement.py`` with ``METARL_TEST_DEVICE`` set), ``train``
  (short trainings from the shipped configs, each followed by ``metarl eval``; on CUDA every host
  synchronisation is counted by its source line) and ``speed`` (meta-iterations/s on CUDA and on
  this machine's CPU, one job after the other, larger meta-batches included). Each stage and job
  has its own time budget, prints as it goes, and a failure is reported while the next job still
  runs; the exit code is 1 if anything failed. Results: a JSON per job, ``summary.json`` and
  ``summary.md`` under ``--out``.

Meta-iterations/s come from the wall clock between two checkpoints the training writes (after
the warm-up iterations, and after the last), so the figure covers whole iterations, including
the work a GPU still had queued. MAML-TRPO's phases (sampling, adaptation, outer update) are
the medians of the ``time/*`` metrics its training logs.

On a CUDA machine lent through the device ``run`` tool (Python 3.12 and a CUDA torch
preinstalled, nothing downloadable, the working tree copied plus at most 8 ignored paths), after
``python scripts/gpu_check.py --prepare`` here, the whole check is one call::

    run(carry=[".whl/site-cp312.tar.xz", ".whl/omniglot", ".whl/manifest.json"],
        command='set -o pipefail; PY=$(command -v python3.12 || command -v python3); '
                '$PY scripts/gpu_check.py --out "$OUT" 2>&1 | tee "$OUT/check.log"',
        timeout_s=540)

then copy the files it returns to ``results/gpu/``. The check unpacks the bundle into a
temporary folder and puts it first on ``PYTHONPATH`` of every step it starts (only under Python
3.12), and points ``METARL_OMNIGLOT_ROOT`` at the bundled zips. Here, ``python
scripts/gpu_check.py --device cpu --quick --budget-scale 3`` runs the same stages at tiny sizes
(on a loaded 2-core VM the default budgets are too short even for those).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_jobs import BENCH_STEPS, SPEED_JOBS, STAGE_BUDGETS, TRAIN_JOBS, Job  # noqa: E402

BUNDLE = ROOT / ".whl"
SITE_TARBALL = BUNDLE / "site-cp312.tar.xz"
OMNIGLOT_DIR = BUNDLE / "omniglot"
MANIFEST = BUNDLE / "manifest.json"
WHEEL_DIR = BUNDLE / "wheels"
CARRY = [".whl/site-cp312.tar.xz", ".whl/omniglot", ".whl/manifest.json"]
STAGES = ("env", "tests", "train", "speed", "bench")
DEFAULT_STAGES = STAGES[:4]
"""``bench`` runs only when asked for: with the others it would not fit one call's 10 minutes."""

# Run on CUDA, a training counts its host synchronisations by source line (torch's sync debug
# mode), then writes them to $GPU_CHECK_SYNC_LOG.
SYNC_PROBE = """
import collections, json, os, sys, traceback, warnings
import torch
from metarl.cli import main
sites, seen = collections.Counter(), set()
def show(message, category, filename, lineno, file=None, line=None):
    if "synchroniz" in str(message):
        ours = [f for f in traceback.extract_stack() if f"{os.sep}metarl{os.sep}" in f.filename
                or f"{os.sep}envs{os.sep}" in f.filename]
        sites[f"{ours[-1].filename}:{ours[-1].lineno}" if ours else f"{filename}:{lineno}"] += 1
    elif (filename, lineno) not in seen:
        seen.add((filename, lineno))
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
warnings.showwarning = show
warnings.simplefilter("always")
torch.cuda.set_sync_debug_mode("warn")
try:
    rc = main(sys.argv[1:])
finally:
    torch.cuda.set_sync_debug_mode(0)
    with open(os.environ["GPU_CHECK_SYNC_LOG"], "w") as f:
        json.dump(dict(sites.most_common()), f, indent=1)
sys.exit(rc)
"""

ENV_PROBE = """
import json, os, platform, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
if info["cuda_available"]:
    info["gpu"] = torch.cuda.get_device_name(0)
    info["gpu_capability"] = list(torch.cuda.get_device_capability(0))
    info["cudnn"] = torch.backends.cudnn.version()
for name in ["numpy", "gymnasium", "mujoco", "stable_baselines3", "tensorboard", "matplotlib",
             "yaml", "PIL", "tqdm", "pytest", "envs", "metarl"]:
    module = __import__(name)
    info[name] = getattr(module, "__version__", "ok")
from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (protobuf, no server)
import envs.mujoco, envs.supervised  # noqa: F401
print(json.dumps(info))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# running steps under a time budget
# ----------------------------------------------------------------------------------------------


def run_step(cmd: list[str], timeout: float, env: dict[str, str], log_path: Path) -> dict:
    """Runs one command with a timeout, streaming its output to a log file; returns rc and time."""
    tic = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc: int | str = proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the step and the env workers it started
            proc.wait()
            rc = "timeout"
    seconds = time.perf_counter() - tic
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-1500:]
    return {"rc": rc, "seconds": round(seconds, 2), "ok": rc == 0, "tail": tail}


def cli_cmd(args: list[str], device: str, sync_log: Path | None = None) -> list[str]:
    """``metarl ARGS`` as a command line (under the sync probe on CUDA)."""
    if device == "cuda" and sync_log is not None:
        return [sys.executable, "-c", SYNC_PROBE, *args]
    return [sys.executable, "-m", "metarl.cli", *args]


def train_args(job: Job, device: str, run_dir: Path, sets: list[str]) -> list[str]:
    args = ["train", job.config, "--run-dir", str(run_dir), "--device", device]
    for item in sets:
        args += ["--set", item]
    return args


# ----------------------------------------------------------------------------------------------
# the stages
# ----------------------------------------------------------------------------------------------


def stage_env(out: Path, env: dict[str, str], budget: float) -> dict:
    result = run_step([sys.executable, "-c", ENV_PROBE], budget, env, out / "env.log")
    info: dict = {}
    if result["ok"]:
        info = json.loads(result["tail"].strip().splitlines()[-1])
    smi = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
    try:
        info["nvidia_smi"] = subprocess.run(
            smi, capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        info["nvidia_smi"] = f"unavailable: {type(err).__name__}"
    info.update(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        host_platform=platform.platform(),
        bundle=env.get("GPU_CHECK_SITE", "none"),
    )
    result["info"] = info
    log(f"env: {json.dumps(info)}")
    if not result["ok"]:
        log("env probe failed:\n" + result["tail"][-800:])
    return result


def stage_tests(out: Path, env: dict[str, str], device: str, budget: float) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"]
    cmd += ["tests/metarl/test_device_placement.py", "--junitxml", str(out / "tests.xml")]
    result = run_step(cmd, budget, {**env, "METARL_TEST_DEVICE": device}, out / "tests.log")
    log(f"tests on {device}: rc {result['rc']} in {result['seconds']} s")
    log("  " + (result["tail"].strip().splitlines() or ["(no output)"])[-1])
    return result


def run_bench_step(step, out: Path, env: dict[str, str], quick: bool, budget: float) -> dict:
    """One benchmark script of ``BENCH_STEPS`` on this machine's CPU; it writes its own JSON."""
    cmd = [sys.executable, *step.argv(quick, str(out / f"{step.name}.json"))]
    result = run_step(cmd, min(step.timeout, budget), env, out / f"{step.name}.log")
    return {"job": step.name, "step": result, "ok": result["ok"]}


def _eval_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return {k: result.get(k) for k in ("metric", "num_tasks", "steps", "mean", "ci95")}


def run_train_job(job: Job, out: Path, env: dict, device: str, quick: bool, budget: float) -> dict:
    run_dir = Path(env["GPU_CHECK_RUNS"]) / f"train-{job.name}-{device}"
    sync_log = out / f"train-{job.name}-syncs.json"
    step_env = {**env, "GPU_CHECK_SYNC_LOG": str(sync_log)}
    sets = job.train_sets(quick)
    cmd = cli_cmd(train_args(job, device, run_dir, sets), device, sync_log)
    tic = time.monotonic()
    result = {"job": job.name, "config": job.config, "device": device, "sets": sets}
    result["train"] = run_step(
        cmd, min(job.timeout, budget), step_env, out / f"train-{job.name}.log"
    )
    left = budget - (time.monotonic() - tic)
    if result["train"]["ok"] and left < 5:
        result["eval"] = {"rc": "skipped", "ok": False, "seconds": 0, "tail": "budget spent"}
    elif result["train"]["ok"]:
        eval_args = ["eval", str(run_dir), "--device", device, *job.eval_args(quick)]
        eval_args += ["--out", str(out / f"train-{job.name}-eval.json")]
        result["eval"] = run_step(
            cli_cmd(eval_args, device), min(job.timeout, left), env, out / f"eval-{job.name}.log"
        )
        result["eval"]["result"] = _eval_summary(out / f"train-{job.name}-eval.json")
    result["train"]["result"] = _eval_summary(run_dir / "eval" / "eval.json")
    if sync_log.is_file():
        result["syncs"] = json.loads(sync_log.read_text())
    result["ok"] = result["train"]["ok"] and result.get("eval", {}).get("ok", False)
    return result


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def phase_medians(csv_path: Path, warmup: int) -> dict[str, float]:
    """Medians of the ``time/*`` metrics in a run's metrics.csv, warm-up rows dropped."""
    rows: dict[str, list[float]] = {}
    if not csv_path.is_file():
        return {}
    for line in csv_path.read_text().splitlines()[1:]:
        step, key, value = line.split(",")[:3]
        if key.startswith("time/"):
            rows.setdefault(key, []).append(float(value))
    return {k: _median(v[warmup:]) or v[-1] for k, v in rows.items() if v}


def iterations_per_second(run_dir: Path, first: int, last: int) -> float | None:
    """(last - first) / the wall time between the checkpoints written after those iterations."""
    ckpt = run_dir / "checkpoints"
    paths = [ckpt / f"checkpoint_{i:08d}.pt" for i in (first, last)]
    if not all(p.is_file() for p in paths):
        return None
    seconds = (paths[1].stat().st_mtime_ns - paths[0].stat().st_mtime_ns) / 1e9
    return (last - first) / seconds if seconds > 0 else None


def speed_sets(job: Job, quick: bool) -> list[str]:
    """A speed run's overrides: checkpoints after the warm-up and at the end, metrics each step."""
    iterations, warmup = job.speed_iterations(quick)
    return [
        *job.sets(quick),
        f"optim.iterations={iterations}",
        f"run.checkpoint_every={warmup}",
        f"run.keep_checkpoints={iterations}",
        "run.log_every=1",
        "run.log_backends=[csv]",
    ]


def run_speed_job(job: Job, device: str, out: Path, env: dict, quick: bool, budget: float) -> dict:
    iterations, warmup = job.speed_iterations(quick)
    run_dir = Path(env["GPU_CHECK_RUNS"]) / f"speed-{job.name}-{device}"
    sets = speed_sets(job, quick)
    cmd = cli_cmd(train_args(job, device, run_dir, sets), device)
    log_path = out / f"speed-{job.name}-{device}.log"
    result = {"job": job.name, "config": job.config, "device": device, **job.describe(quick)}
    result["sets"] = sets
    result["step"] = run_step(cmd, min(job.timeout, budget), env, log_path)
    result["iterations_per_second"] = iterations_per_second(run_dir, warmup, iterations)
    result["measured_iterations"] = iterations - warmup
    result["phase_seconds"] = phase_medians(run_dir / "metrics.csv", warmup)
    result["ok"] = result["step"]["ok"] and result["iterations_per_second"] is not None
    return result


def run_stage_jobs(name, jobs, budget, run_one) -> list[dict]:
    """Runs jobs one after the other until the stage's budget is spent; reports each as it ends."""
    deadline, results = time.monotonic() + budget, []
    for job in jobs:
        left = deadline - time.monotonic()
        if left < 5:
            pair = job if isinstance(job, _Pair) else None  # speed: the job on one device
            skipped = {"job": pair.job.name if pair else job.name, "ok": False}
            skipped["skipped"] = f"{name} budget spent"
            results.append({**skipped, **({"device": pair.device} if pair else {})})
            log(f"{name} {job.name}: skipped, the stage's {budget:.0f} s are spent")
            continue
        result = run_one(job, left)
        results.append(result)
        log(f"{name} {result['job']} ({result.get('device', '')}): {_verdict(result)}")
    return results


def _verdict(result: dict) -> str:
    if "skipped" in result:
        return "skipped: " + result["skipped"]
    step = result.get("train") or result.get("step") or {}
    text = f"{'ok' if result['ok'] else 'FAILED'} (rc {step.get('rc')}, {step.get('seconds')} s)"
    if "eval" in result:
        text += f"; eval rc {result['eval']['rc']}, {result['eval']['seconds']} s"
        if step.get("ok") and not result["eval"]["ok"]:
            step = result["eval"]
    if result.get("iterations_per_second"):
        text += f", {result['iterations_per_second']:.3g} it/s"
    if result.get("syncs") is not None:
        text += f", {sum(result['syncs'].values())} host syncs"
    if not result["ok"]:
        text += "\n" + step.get("tail", "")[-800:]
    return text


# ----------------------------------------------------------------------------------------------
# the check
# ----------------------------------------------------------------------------------------------


def prepare_env(no_bundle: bool) -> dict[str, str]:
    """The environment of every step: the unpacked bundle first on PYTHONPATH, Omniglot's zips."""
    env = dict(os.environ)
    paths = [str(ROOT)]
    use_bundle = not no_bundle and SITE_TARBALL.is_file() and sys.version_info[:2] == (3, 12)
    if use_bundle:
        import tarfile

        site = Path(tempfile.mkdtemp(prefix="metarl-gpu-site-"))
        tic = time.perf_counter()
        with tarfile.open(SITE_TARBALL) as tar:
            tar.extractall(site, filter="data")
        env["GPU_CHECK_SITE"] = str(site / "site")
        paths.insert(0, str(site / "site"))
        log(f"bundle unpacked to {site} in {time.perf_counter() - tic:.1f} s")
    elif SITE_TARBALL.is_file() and not no_bundle:
        log(f"bundle not used: it is for Python 3.12, this is {platform.python_version()}")
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if (OMNIGLOT_DIR / "images_background.zip").is_file() and "METARL_OMNIGLOT_ROOT" not in env:
        env["METARL_OMNIGLOT_ROOT"] = str(OMNIGLOT_DIR)
    env["GPU_CHECK_RUNS"] = tempfile.mkdtemp(prefix="metarl-gpu-runs-")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def check(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = prepare_env(args.no_bundle)
    picked = [j for j in TRAIN_JOBS if not args.jobs or j.name in args.jobs]
    speed = [j for j in SPEED_JOBS if not args.jobs or j.name in args.jobs]
    devices = ["cuda", "cpu"] if args.device == "cuda" else ["cpu"]
    summary: dict = {"device": args.device, "quick": args.quick, "stages": {}}
    tic = time.monotonic()
    for stage in args.stages:
        budget = STAGE_BUDGETS[stage] * args.budget_scale
        log(f"== stage {stage} (budget {budget:.0f} s)")
        if stage == "env":
            result = stage_env(out, env, budget)
            summary["env"] = result["info"]
        elif stage == "tests":
            result = stage_tests(out, env, args.device, budget)
        elif stage == "bench":
            result = {
                "jobs": run_stage_jobs(
                    "bench",
                    BENCH_STEPS,
                    budget,
                    lambda step, left: run_bench_step(step, out, env, args.quick, left),
                )
            }
        elif stage == "train":
            result = {
                "jobs": run_stage_jobs(
                    "train",
                    picked,
                    budget,
                    lambda job, left: run_train_job(job, out, env, args.device, args.quick, left),
                )
            }
        else:
            pairs = [(job, dev) for job in speed for dev in devices]
            result = {
                "jobs": run_stage_jobs(
                    "speed",
                    [_Pair(job, dev) for job, dev in pairs],
                    budget,
                    lambda p, left: run_speed_job(p.job, p.device, out, env, args.quick, left),
                )
            }
        if "jobs" in result:
            result["ok"] = all(j["ok"] for j in result["jobs"])
            for job in result["jobs"]:
                name = f"{stage}-{job['job']}" + (f"-{job['device']}" if stage == "speed" else "")
                (out / f"{name}.json").write_text(json.dumps(job, indent=1) + "\n")
        summary["stages"][stage] = result
        log(f"== stage {stage}: {'ok' if result['ok'] else 'FAILED'}")
    summary["seconds"] = round(time.monotonic() - tic, 1)
    summary["ok"] = all(s["ok"] for s in summary["stages"].values())
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary), flush=True)
    log(f"done in {summary['seconds']} s: {'ok' if summary['ok'] else 'FAILED'}; files in {out}")
    return 0 if summary["ok"] else 1


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def markdown(summary: dict) -> str:
    """The summary as markdown: environment, stages, trainings, speed side by side."""
    env = summary.get("env", {})
    lines = [
        f"# GPU check ({'quick, ' if summary['quick'] else ''}device {summary['device']})",
        "",
        f"- date: {env.get('date', '?')}; total {summary.get('seconds')} s",
        f"- GPU: {env.get('gpu', 'none')} ({env.get('nvidia_smi', '?')})",
        f"- torch {env.get('torch', '?')} (CUDA {env.get('torch_cuda')}, cuDNN {env.get('cudnn')}),"
        f" Python {env.get('python', '?')}, {env.get('cpu_count', '?')} CPU cores",
        "",
        "| stage | result |",
        "| --- | --- |",
    ]
    for name, stage in summary["stages"].items():
        failed = [j["job"] for j in stage.get("jobs", []) if not j["ok"]]
        text = "ok" if stage["ok"] else "FAILED" + (f": {', '.join(failed)}" if failed else "")
        if name == "tests":
            text += f" ({(stage.get('tail') or '').strip().splitlines()[-1:]})"
        lines.append(f"| {name} | {text} |")
    train = summary["stages"].get("train", {}).get("jobs", [])
    if train:
        lines += ["", "| training | rc | seconds | eval mean per step | host syncs |"]
        lines += ["| --- | --- | --- | --- | --- |"]
        for job in train:
            step = job.get("train", {})
            means = ((job.get("eval") or {}).get("result") or {}).get("mean") or []
            syncs = job.get("syncs")
            lines.append(
                f"| {job['job']} | {step.get('rc', job.get('skipped'))} | {step.get('seconds')} | "
                f"{', '.join(_fmt(m) for m in means[:6])} | "
                f"{'–' if syncs is None else sum(syncs.values())} |"
            )
    speed = summary["stages"].get("speed", {}).get("jobs", [])
    if speed:
        lines += _speed_table(speed)
    return "\n".join(lines) + "\n"


def _speed_table(jobs: list[dict]) -> list[str]:
    rows: dict[str, dict] = {}
    for job in jobs:
        name = job["job"].rsplit("-", 1)[0] if "device" not in job else job["job"]
        device = job.get("device") or job["job"].rsplit("-", 1)[1]
        rows.setdefault(name, {"label": job.get("label", "")})[device] = job
    lines = [
        "",
        "| meta-iterations/s | size | CUDA | CPU | CUDA / CPU | outer update s (CUDA / CPU) |",
    ]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        its = {d: (row.get(d) or {}).get("iterations_per_second") for d in ("cuda", "cpu")}
        ratio = its["cuda"] / its["cpu"] if its["cuda"] and its["cpu"] else None
        outer = [
            ((row.get(d) or {}).get("phase_seconds") or {}).get("time/outer_update_seconds")
            for d in ("cuda", "cpu")
        ]
        outer_text = " / ".join(_fmt(o) for o in outer) if any(outer) else "–"
        lines.append(
            f"| {name} | {row['label']} | {_fmt(its['cuda'])} | {_fmt(its['cpu'])} | "
            f"{_fmt(ratio)} | {outer_text} |"
        )
    return lines


class _Pair:
    """A speed job on one device, with the ``name`` the stage runner prints."""

    def __init__(self, job: Job, device: str):
        self.job, self.device, self.name = job, device, f"{job.name}-{device}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--prepare", action="store_true", help="build the bundle in .whl/")
    mode.add_argument("--dry-run", action="store_true", help="check the bundle and the configs")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a CPU smoke run)")
    parser.add_argument("--out", default="runs/gpu_check", help="folder for the results")
    parser.add_argument(
        "--stages",
        default=",".join(DEFAULT_STAGES),
        help=f"comma-separated subset of {STAGES} (default: all but bench)",
    )
    parser.add_argument("--jobs", default="", help="comma-separated job names (default: all)")
    parser.add_argument("--no-bundle", action="store_true", help="use the installed packages")
    parser.add_argument(
        "--budget-scale", type=float, default=1.0, help="multiply every time budget (slow CPUs)"
    )
    parser.add_argument("--target", help="--dry-run: scratch folder for the wheel install")
    parser.add_argument(
        "--python312", help="--dry-run: a Python 3.12 to import the packed bundle with"
    )
    args = parser.parse_args(argv)
    args.stages = [s for s in args.stages.split(",") if s]
    args.jobs = [j for j in args.jobs.split(",") if j]
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; expected a subset of {STAGES}")
    names = {j.name for j in [*TRAIN_JOBS, *SPEED_JOBS]}
    if set(args.jobs) - names:
        parser.error(f"unknown jobs {sorted(set(args.jobs) - names)}; expected {sorted(names)}")
    if args.prepare or args.dry_run:
        import gpu_bundle

        if args.prepare:
            return gpu_bundle.prepare()
        resolve = [
            (f"train {j.name}", j.config, j.train_sets(q)) for j in TRAIN_JOBS for q in (0, 1)
        ]
        resolve += [
            (f"speed {j.name}", j.config, speed_sets(j, q)) for j in SPEED_JOBS for q in (0, 1)
        ]
        return gpu_bundle.dry_run(args.target, resolve, args.python312)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
