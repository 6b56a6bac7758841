"""Issue 15, findings 3 and 7: settings never checked, and raw tracebacks, as they were found.

Every expected failure of ``metarl`` is one line on stderr (``error: ...``) with exit code 2 for
bad input or 1 for a failure while running, and a refused config writes nothing: the corrected
command must not then be refused because the run directory exists.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from envs import WorkerError
from metarl.cli import EXIT_BAD_INPUT, EXIT_RUNTIME
from metarl.cli import main as cli_main
from metarl.rl.env_config import available_cpus
from metarl.runs import RunDirExistsError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MAML_SIN = str(CONFIGS / "maml" / "sinusoid.yaml")
NAV = str(CONFIGS / "maml_trpo" / "navigation2d.yaml")


def _sets(*overrides: str) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _train_argv(config: str, run_dir: Path, *overrides: str) -> list[str]:
    tiny = ("optim.iterations=2", "run.num_eval_tasks=3", "run.progress=false")
    return [
        "train",
        config,
        "--run-dir",
        str(run_dir),
        "--device",
        "cpu",
        *_sets(*tiny, *overrides),
    ]


def _fails(capsys, argv: list[str], code: int, *fragments: str) -> str:
    """Runs the CLI, asserts the exit code and one stderr line holding every fragment."""
    assert cli_main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------
# finding 3: every setting checked before any work and before the run directory exists
# --------------------------------------------------------------------------------------------


def test_raw_pixels_for_a_learner_that_needs_a_network_are_refused_up_front(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = str(CONFIGS / "maml" / "omniglot_5w1s.yaml")
    argv = _train_argv(config, run_dir, "model.network=flat")
    _fails(capsys, argv, EXIT_BAD_INPUT, "model.network='flat'", "for mann and snail only")
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("optim.schedule=cosine", "optim.min_lr=-1"), "optim.min_lr must be in [0, lr"),
        (("optim.schedule=step", "optim.gamma=-5"), "optim.gamma must be in (0, 1]"),
        (("optim.grad_clip=-1",), "optim.grad_clip must be > 0, got -1.0"),
        (("optim.step_size=0",), "optim.step_size must be > 0, got 0"),
        (("optim.lr=.nan",), "optim.lr: expected a number, got nan"),
        (("inner.lr=-0.01",), "inner.lr must be > 0"),
        (("task.phase_range=[3.0, 1.0]",), "task.phase_range must be finite with low <= high"),
        (("model.hidden=[40, 0]",), "model.hidden must be one or more widths >= 1"),
        (("task.meta_batch_size=100000000",), "task.meta_batch_size=100000000 needs at least"),
    ],
)
def test_bad_supervised_settings_are_refused_before_the_run_directory_exists(
    tmp_path, capsys, overrides, message
):
    run_dir = tmp_path / "run"
    _fails(capsys, _train_argv(MAML_SIN, run_dir, *overrides), EXIT_BAD_INPUT, message)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("trpo.cg_damping=-1",), "trpo.cg_damping must be >= 0, got -1.0"),
        (("trpo.ls_backtrack=2",), "trpo.ls_backtrack must be in (0, 1), got 2.0"),
        (("algo.max_kl=0.1",), "algo.max_kl: renamed to trpo.max_kl (set trpo.max_kl instead)"),
        (("run.eval_every=5",), "run.eval_every: removed; training evaluates once"),
        (
            ("env.id=metarl/Navigaton2D-v0",),
            "env.id='metarl/Navigaton2D-v0' is not a registered task env (did you mean "
            "'metarl/Navigation2D-v0'?)",
        ),
        (("env.action_scale=10",), "metarl/Navigation2D-v0 does not accept env.action_scale"),
        (
            ("env.backend=process", f"env.num_workers={available_cpus() + 1}"),
            f"env.num_workers={available_cpus() + 1} exceeds the {available_cpus()} CPUs",
        ),
        (
            ("env.backend=thread", "env.num_workers=1"),
            "env.backend='thread' steps MuJoCo envs on threads",
        ),
    ],
)
def test_bad_rl_settings_are_refused_before_the_run_directory_exists(
    tmp_path, capsys, overrides, message
):
    run_dir = tmp_path / "run"
    _fails(capsys, _train_argv(NAV, run_dir, *overrides), EXIT_BAD_INPUT, message)
    assert not run_dir.exists()


def test_more_workers_than_sub_envs_is_refused_up_front(tmp_path, capsys):
    run_dir = tmp_path / "run"
    small = ("env.meta_batch_size=1", "env.episodes_per_task=1", "env.backend=process")
    argv = _train_argv(NAV, run_dir, *small, "env.num_workers=2")
    if available_cpus() < 2:
        pytest.skip("needs 2 CPUs, so that the CPU check does not fire first")
    _fails(capsys, argv, EXIT_BAD_INPUT, "env.num_workers=2 exceeds the 1 sub-envs of the training")
    assert not run_dir.exists()


# --------------------------------------------------------------------------------------------
# finding 7: one line, the right exit code, --debug for the traceback
# --------------------------------------------------------------------------------------------


def test_malformed_yaml_is_one_line_naming_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task:\n  family: sinusoid\n shots: 3\n")
    _fails(
        capsys,
        ["train", str(bad), "--run-dir", str(tmp_path / "run")],
        EXIT_BAD_INPUT,
        "invalid YAML: expected <block end>",
        "at line 3, column 2",
    )
    assert not (tmp_path / "run").exists()


def test_an_existing_run_directory_says_what_to_do(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(MAML_SIN, run_dir)) == 0
    capsys.readouterr()
    _fails(
        capsys,
        _train_argv(MAML_SIN, run_dir),
        EXIT_BAD_INPUT,
        f"run directory {run_dir} already holds a run: pass --resume",
    )
    with pytest.raises(RunDirExistsError):  # --debug: the traceback, before or after the command
        cli_main(["--debug", *_train_argv(MAML_SIN, run_dir)])
    with pytest.raises(RunDirExistsError):
        cli_main([*_train_argv(MAML_SIN, run_dir), "--debug"])


@pytest.mark.parametrize("num_tasks", ["-5", "0"])
def test_eval_refuses_a_task_count_below_one(tmp_path, capsys, num_tasks):
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(MAML_SIN, run_dir)) == 0
    capsys.readouterr()
    _fails(
        capsys,
        ["eval", str(run_dir), "--num-tasks", num_tasks],
        EXIT_BAD_INPUT,
        f"argument --num-tasks: must be >= 1, got {num_tasks}",
    )
    assert not (run_dir / "eval" / "eval_test.json").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("inner.lr=0.5", "metarl eval changes only eval.* settings"),
        ("run.seed=3", "run.seed belongs to what the checkpoint was trained with"),
        ("eval.stepz=2", "eval.stepz: unknown key"),
        ("eval.steps=-1", "eval.steps"),
    ],
)
def test_eval_set_takes_only_valid_eval_settings(tmp_path, capsys, override, fragment):
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(MAML_SIN, run_dir)) == 0
    capsys.readouterr()
    _fails(capsys, ["eval", str(run_dir), "--set", override], EXIT_BAD_INPUT, fragment)
    assert not (run_dir / "eval" / "eval_test.json").exists()


def test_eval_set_changes_how_the_run_is_evaluated_not_the_run(tmp_path, capsys):
    """A longer evaluation of the same weights: the run's config.yaml is left as trained."""
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(NAV, run_dir, *NAV_TINY)) == 0
    stored = (run_dir / "config.yaml").read_bytes()
    out = tmp_path / "e.json"
    argv = ["eval", str(run_dir), "--num-tasks", "2", "--out", str(out)]
    assert cli_main([*argv, "--set", "eval.steps=2", "--set", "eval.episodes_per_task=3"]) == 0
    capsys.readouterr()
    written = json.loads(out.read_text())
    assert written["steps"] == [0, 1, 2]  # the run was trained with eval.steps=1
    assert written["extra"]["episodes_per_task"] == 3
    assert written["extra"]["eval"]["episodes_per_task"] == 3
    assert (run_dir / "config.yaml").read_bytes() == stored


def test_eval_reads_a_results_folder_whose_final_checkpoint_sits_beside_its_config(
    tmp_path, capsys
):
    """``metarl eval results/NAME``: committed rows keep checkpoint_*.pt beside config.yaml."""
    run_dir, folder = tmp_path / "run", tmp_path / "results_row"
    assert cli_main(_train_argv(MAML_SIN, run_dir, "run.checkpoint_every=1")) == 0
    folder.mkdir()
    shutil.copy(run_dir / "config.yaml", folder)
    _fails(capsys, ["eval", str(folder)], EXIT_BAD_INPUT, f"no checkpoint in {folder} or")
    for path in (run_dir / "checkpoints").glob("checkpoint_*.pt"):
        shutil.copy(path, folder)  # the final one (2) and an earlier one, as some rows keep
    assert len(list(folder.glob("checkpoint_*.pt"))) == 2
    argv = ["--num-tasks", "3", "--steps", "2"]
    assert cli_main(["eval", str(run_dir), *argv, "--out", str(tmp_path / "run.json")]) == 0
    assert cli_main(["eval", str(folder), *argv, "--out", str(tmp_path / "folder.json")]) == 0
    capsys.readouterr()
    from_run, from_folder = (
        json.loads((tmp_path / f).read_text()) for f in ("run.json", "folder.json")
    )
    assert from_folder["mean"] == from_run["mean"]
    assert from_folder["ci95"] == from_run["ci95"]


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(MAML_SIN, run_dir)) == 0
    capsys.readouterr()
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save(
        {"iteration": 2, "params": Payload()}, run_dir / "checkpoints" / "checkpoint_00000002.pt"
    )
    _fails(capsys, ["eval", str(run_dir)], EXIT_BAD_INPUT, "refused", "GLOBAL posix.mkdir")
    _fails(
        capsys,
        [*_train_argv(MAML_SIN, run_dir, "optim.iterations=3"), "--resume"],
        EXIT_BAD_INPUT,
        "refused",
    )
    assert not marker.exists()


def test_nan_stop_without_a_checkpoint_does_not_claim_one(tmp_path, capsys):
    run_dir = tmp_path / "run"
    line = _fails(
        capsys,
        _train_argv(MAML_SIN, run_dir, "inner.lr=1e30"),
        EXIT_RUNTIME,
        "non-finite train/loss = nan at step 0",
        "no checkpoint was saved before it",
    )
    assert "last good state is" not in line
    assert not (run_dir / "checkpoints").exists()


def test_nan_stop_after_a_checkpoint_names_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    diverges = ("optim.iterations=5", "optim.lr=1e10", "run.checkpoint_every=1")
    _fails(
        capsys,
        _train_argv(MAML_SIN, run_dir, *diverges),
        EXIT_RUNTIME,
        "non-finite train/loss = nan at step 1",
        f"the last good state is {run_dir / 'checkpoints' / 'checkpoint_00000001.pt'}",
    )


def test_disk_full_is_a_runtime_failure_and_keeps_the_last_checkpoint(
    tmp_path, capsys, monkeypatch
):
    run_dir = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    _fails(
        capsys,
        _train_argv(MAML_SIN, run_dir, "optim.iterations=3", "run.checkpoint_every=1"),
        EXIT_RUNTIME,
        "disk full",
        "--resume",
    )
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint_00000001.pt"]


def test_permission_denied_is_a_runtime_failure(tmp_path, capsys, monkeypatch):
    runs = importlib.import_module("metarl.runs")

    def denied(config, path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runs, "save_config", denied)
    _fails(
        capsys,
        _train_argv(MAML_SIN, tmp_path / "run"),
        EXIT_RUNTIME,
        "permission denied",
        "config.yaml",
    )


def test_a_worker_crash_is_one_line_with_the_worker_and_its_exception(
    tmp_path, capsys, monkeypatch
):
    kind = importlib.import_module("metarl.algorithms.supervised")

    def crash(cfg, device):
        raise WorkerError(
            "worker 1 (sub-envs 4..7) raised:\nTraceback (most recent call last):\n"
            '  File "engine.py", line 3, in step\nValueError: qpos is not finite'
        )

    monkeypatch.setattr(kind, "train_from_config", crash)
    _fails(
        capsys,
        _train_argv(MAML_SIN, tmp_path / "run"),
        EXIT_RUNTIME,
        "worker 1 (sub-envs 4..7) raised: ValueError: qpos is not finite",
    )


NAV_TINY = (
    "env.horizon=10",
    "env.meta_batch_size=2",
    "env.episodes_per_task=2",
    "policy.hidden=[8]",
    "optim.iterations=1",
    "eval.steps=1",
    "eval.episodes_per_task=2",
    "eval.baselines=false",
    "run.num_eval_tasks=2",
)


def test_after_a_refused_env_id_the_corrected_command_runs(tmp_path, capsys):
    run_dir = tmp_path / "run"
    typo = _train_argv(NAV, run_dir, *NAV_TINY, "env.id=metarl/Navigaton2D-v0")
    _fails(capsys, typo, EXIT_BAD_INPUT, "did you mean 'metarl/Navigation2D-v0'?")
    assert cli_main(_train_argv(NAV, run_dir, *NAV_TINY)) == 0  # not "already holds a run"


def test_rl2_eval_refuses_trials_of_no_episodes_instead_of_running_the_default(tmp_path, capsys):
    """For RL² ``--steps`` is the episodes per trial: 0 once fell back to the trained n."""
    run_dir, rl2 = tmp_path / "run", str(CONFIGS / "rl2" / "bandit_k5_n10.yaml")
    tiny = ("env.num_trials=4", "policy.hidden_size=8", "ppo.epochs=1", "eval.num_trials=4")
    assert cli_main(_train_argv(rl2, run_dir, *tiny)) == 0
    capsys.readouterr()
    out = tmp_path / "e.json"
    argv = ["eval", str(run_dir), "--num-tasks", "4", "--out", str(out)]
    _fails(capsys, [*argv, "--steps", "0"], EXIT_BAD_INPUT, "--steps", "at least one episode")
    assert not out.exists()
    assert cli_main([*argv, "--steps", "3"]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["steps"] == [0, 1, 2]  # three episodes per trial


def test_rl2_env_id_and_workers_are_checked_up_front(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rl2 = str(CONFIGS / "rl2" / "bandit_k5_n10.yaml")
    _fails(
        capsys,
        _train_argv(rl2, run_dir, "env.id=metarl/Bandit-K7-v0"),
        EXIT_BAD_INPUT,
        "env.id='metarl/Bandit-K7-v0' is not a registered task env",
    )
    _fails(
        capsys,
        _train_argv(rl2, run_dir, "env.backend=thread", "env.num_workers=1"),
        EXIT_BAD_INPUT,
        "natively batched in numpy: use env.backend=sync",
    )
    assert not run_dir.exists()


def test_eval_of_a_run_whose_every_checkpoint_is_damaged_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(_train_argv(MAML_SIN, run_dir)) == 0
    capsys.readouterr()
    (run_dir / "checkpoints" / "checkpoint_00000002.pt").write_bytes(b"")
    _fails(
        capsys,
        ["eval", str(run_dir)],
        EXIT_BAD_INPUT,
        "every checkpoint in",
        "is damaged (checkpoint_00000002.pt)",
    )
    _fails(capsys, ["eval", str(tmp_path / "nowhere")], EXIT_BAD_INPUT, "not found")


def test_cuda_on_a_machine_without_it_is_bad_input(tmp_path, capsys):
    from metarl.device import cuda_available

    if cuda_available():
        pytest.skip("this machine has CUDA")
    run_dir = tmp_path / "run"
    argv = _train_argv(MAML_SIN, run_dir)
    argv[argv.index("cpu")] = "cuda"
    _fails(capsys, argv, EXIT_BAD_INPUT)
    assert not run_dir.exists()


def test_auto_backend_is_a_valid_env_setting_that_caps_its_own_workers(tmp_path, capsys):
    from metarl.rl.env_config import VecEnvConfig, preflight_env

    # auto uses at most the usable CPUs, so a larger num_workers is a cap, not an error
    preflight_env(VecEnvConfig(backend="auto", num_workers=available_cpus() + 1), {"training": 1})
    run_dir = tmp_path / "run"
    _fails(capsys, _train_argv(NAV, run_dir, "env.backend=fast"), EXIT_BAD_INPUT, "'auto'")
    assert not run_dir.exists()
