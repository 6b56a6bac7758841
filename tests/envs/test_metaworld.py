"""Meta-World ML1 / ML10 / ML45 through the task interface (the ``metaworld`` extra).

``make test`` installs the extra (``pip install -e '.[dev,metaworld]'``), so these run in CI;
without it they are skipped and ``test_without_the_extra_*`` checks the error users get.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import envs
from envs.vector import make_vec

metaworld = pytest.importorskip("metaworld")
mw = pytest.importorskip("envs.meta_world")

pytestmark = pytest.mark.timeout(300)

ML1, ML10 = "metarl/MetaWorldML1-v0", "metarl/MetaWorldML10-v0"


def _rand_vec(task):
    return pickle.loads(task.data)["rand_vec"]


def _one_task_per_class(benchmark, task_name, seed):
    """A stand-in for Meta-World's task generator: one task per class, from a seeded env."""
    cls = metaworld.env_dict.ALL_V3_ENVIRONMENTS[task_name]
    env = cls()
    env._freeze_rand_vec, env._set_task_called, env.seeded_rand_vec = False, True, True
    env.seed(seed)
    env.reset()
    data = {"rand_vec": env._last_rand_vec, "env_cls": cls, "partially_observable": True}
    env.close()
    task = mw.MetaWorldTask(task_name, pickle.dumps(data))
    return {"train": (task,), "test": (task,)}


def test_ml1_keeps_metaworlds_own_train_and_test_split():
    dist = envs.get_task_distribution(ML1, task_name="reach-v3")
    train, test = dist.split_tasks("train"), dist.split_tasks("test")
    bench = metaworld.ML1("reach-v3", seed=0)
    assert [t.data for t in train] == [t.data for t in bench.train_tasks]
    assert [t.data for t in test] == [t.data for t in bench.test_tasks]
    assert len(train) == len(test) == 50 and not set(train) & set(test)
    rng = np.random.default_rng(0)
    drawn = dist.sample(200, rng)
    assert set(drawn) <= set(train) and len(set(drawn)) > 40  # sample() draws train tasks
    assert set(dist.sample(20, rng, split="test")) <= set(test)
    task = drawn[0]
    assert pickle.loads(pickle.dumps(task)) == task and hash(task) == hash(drawn[0])
    assert mw.MetaWorldTask.from_dict(task.to_dict()) == task
    assert "env_name='reach-v3'" in repr(task) and len(repr(task)) < 100


@pytest.mark.slow
@pytest.mark.parametrize("start", [0, 25])
def test_every_ml1_task_name_builds_resets_and_steps(monkeypatch, start):
    monkeypatch.setattr(mw, "_benchmark_tasks", _one_task_per_class)
    names = metaworld.ML1.ENV_NAMES
    assert len(names) == 50
    for name in names[start : start + 25]:
        engine = envs.make_engine(ML1, 1, task_name=name)
        (task,) = engine.distribution.split_tasks("train")
        engine.set_tasks([task])
        obs = engine.reset(np.zeros(1, dtype=np.int64))
        out = engine.step(np.zeros((1, 4)))
        assert obs.shape == out.obs.shape == (1, 39), name
        assert np.isfinite(out.reward).all() and out.extras["success"][0] in (0.0, 1.0), name
        np.testing.assert_array_equal(engine._envs[0]._last_rand_vec, _rand_vec(task))
        engine.close()


def test_ml10_split_holds_out_five_classes():
    dist = envs.get_task_distribution(ML10)
    train, test = dist.split_tasks("train"), dist.split_tasks("test")
    assert len(train) == 500 and len(test) == 250
    train_classes = {t.env_name for t in train}
    test_classes = {t.env_name for t in test}
    assert len(train_classes) == 10 and len(test_classes) == 5
    assert not train_classes & test_classes
    assert test_classes == {"drawer-open-v3", "door-close-v3", "shelf-place-v3", "sweep-into-v3",
                            "lever-pull-v3"}  # fmt: skip


def _mixed_ml10_tasks():
    train = envs.get_task_distribution(ML10).split_tasks("train")
    first = {}
    for task in train:
        first.setdefault(task.env_name, task)
    return list(first.values())[:5]


def _trajectory(backend, tasks, swapped):
    kwargs = {"num_workers": 2}
    if backend == "process":
        kwargs["start_method"] = "fork"  # the workers inherit the built task lists
    if backend == "sync":
        kwargs = {}
    vec = make_vec(ML10, len(tasks), tasks=tasks, backend=backend, horizon=4, **kwargs)
    rng = np.random.default_rng(0)
    try:
        obs, _ = vec.reset(seed=7)
        out = [obs]
        for t in range(10):
            if t == 5:  # every sub-env changes class: envs come from the pool
                obs, _ = vec.reset(options={"tasks": swapped})
                out.append(obs)
            obs, reward, _, trunc, info = vec.step(rng.uniform(-1, 1, (len(tasks), 4)))
            out += [obs, reward, trunc, info["success"], info["obj_to_target"]]
        assert vec.tasks == list(swapped)
        return out
    finally:
        vec.close()


@pytest.mark.slow
def test_a_mixed_class_ml10_batch_steps_identically_in_every_backend():
    tasks = _mixed_ml10_tasks()
    assert len({t.env_name for t in tasks}) == 5
    swapped = tasks[1:] + tasks[:1]
    sync = _trajectory("sync", tasks, swapped)
    for backend in ("thread", "process"):
        other = _trajectory(backend, tasks, swapped)
        assert len(other) == len(sync)
        for a, b in zip(sync, other, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=backend)


def test_a_sub_env_is_the_single_gymnasium_env_with_its_task_and_seed():
    import gymnasium as gym

    tasks = _mixed_ml10_tasks()[:2]
    actions = np.random.default_rng(1).uniform(-1, 1, (3, 2, 4))
    vec = make_vec(ML10, 2, tasks=tasks)
    obs, _ = vec.reset(seed=3)
    batched = [obs[1]] + [vec.step(a)[0][1] for a in actions]
    vec.close()
    env = gym.make(ML10)
    single = [env.reset(seed=4, options={"task": tasks[1]})[0]]
    single += [env.step(a[1])[0] for a in actions]
    env.close()
    np.testing.assert_array_equal(np.stack(batched), np.stack(single))


def test_a_task_set_on_a_sub_env_survives_resets():
    dist = envs.get_task_distribution(ML1)
    tasks = dist.split_tasks("train")[:2]
    vec = make_vec(ML1, 2, tasks=tasks, horizon=3)  # two autoresets in 7 steps
    try:
        vec.reset(seed=0)
        for _ in range(7):
            vec.step(np.zeros((2, 4)))
        vec.reset()
        assert vec.tasks == tasks
        for i, task in enumerate(tasks):
            env = vec.engine._envs[i]
            np.testing.assert_array_equal(env._last_rand_vec, _rand_vec(task))
            np.testing.assert_array_equal(env._target_pos, _rand_vec(task)[3:])  # reach's goal
    finally:
        vec.close()


def test_wrong_names_foreign_tasks_and_bad_arguments_are_clear_errors():
    from envs.light.navigation import Navigation2DTask

    with pytest.raises(ValueError, match="'reach-v2' is not a Meta-World v3 task"):
        envs.get_task_distribution(ML1, task_name="reach-v2")
    with pytest.raises(ValueError, match="task_name is for ML1 only"):
        envs.get_task_distribution(ML10, task_name="reach-v3")
    with pytest.raises(ValueError, match="benchmark must be one of"):
        envs.get_task_distribution(ML10, benchmark="ML5")
    with pytest.raises(ValueError, match="fixes its own train and test tasks"):
        envs.get_task_distribution(ML1, num_train_tasks=5)
    with pytest.raises(TypeError, match="unknown argument"):
        envs.make_engine(ML1, 1, ctrl_cost_weight=1.0)
    reach = envs.get_task_distribution(ML1)
    push = envs.get_task_distribution(ML1, task_name="push-v3").split_tasks("train")[0]
    with pytest.raises(ValueError, match="task class 'push-v3' is not part of MetaWorld ML1"):
        reach.validate(push)
    # ML10's reach-v3 tasks are ML1's (both draw from seed 0); another seed's are not
    foreign = envs.get_task_distribution(ML1, benchmark_seed=5).split_tasks("train")[0]
    with pytest.raises(ValueError, match="a task of another benchmark"):
        reach.validate(foreign)
    with pytest.raises(TypeError, match="expects a MetaWorldTask"):
        reach.validate(Navigation2DTask((0.0, 0.0)))
    vec = make_vec(ML1, 1)
    try:
        with pytest.raises(ValueError, match="a task of another benchmark"):
            vec.set_tasks([foreign])
        vec.reset(seed=0)
        with pytest.raises(ValueError, match="actions must be finite"):
            vec.step(np.full((1, 4), np.nan))
    finally:
        vec.close()


@pytest.mark.slow
@pytest.mark.timeout(900)  # Meta-World generates ML45's tasks in about a minute of one core
def test_ml45_builds_with_its_held_out_classes():
    dist = envs.get_task_distribution(ML10, benchmark="ML45")
    train, test = dist.split_tasks("train"), dist.split_tasks("test")
    assert len(train) == 45 * 50 and len(test) == 5 * 50
    assert len({t.env_name for t in train}) == 45
    assert not {t.env_name for t in train} & {t.env_name for t in test}
    firsts = list({t.env_name: t for t in test}.values())
    vec = make_vec(ML10, 5, benchmark="ML45", tasks=firsts)
    try:
        obs, _ = vec.reset(seed=0)
        obs, reward, *_ = vec.step(np.zeros((5, 4)))
        assert obs.shape == (5, 39) and np.isfinite(reward).all()
    finally:
        vec.close()


def test_without_the_extra_the_error_names_it():
    code = (
        "import sys; sys.modules['metaworld'] = None\n"
        "import envs\n"
        "assert 'metarl/MetaWorldML1-v0' not in envs.task_env_ids()\n"
        "for call in (lambda: __import__('envs.meta_world'),\n"
        "             lambda: envs.get_task_distribution('metarl/MetaWorldML1-v0')):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as err:\n"
        "        assert \"pip install 'metarl[metaworld]'\" in str(err), err\n"
        "    else:\n"
        "        raise SystemExit('no ImportError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _metrics(run_dir):
    import csv

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return {(int(r["step"]), r["key"]): float(r["value"]) for r in rows}


@pytest.mark.parametrize(
    ("config", "keys", "tiny", "episodes", "columns"),
    [
        (
            "configs/maml_trpo/metaworld_ml1_reach.yaml",
            ("train/pre_success", "train/post_success"),
            ["env.meta_batch_size=2", "env.episodes_per_task=2", "policy.hidden=[8]",
             "eval.steps=1", "eval.episodes_per_task=2"],
            4,  # sub-envs per phase: 2 tasks x 2 episodes
            2,  # eval curve: after 0 and 1 steps
        ),
        (
            "configs/rl2/metaworld_ml1_reach.yaml",
            ("train/first_episode_success", "train/last_episode_success"),
            ["env.num_trials=3", "env.episodes_per_trial=2", "policy.hidden_size=8"],
            3,  # sub-envs: one per trial
            2,  # eval curve: episodes 1 and 2 of the trial
        ),
    ],
)  # fmt: skip
def test_training_logs_the_success_rate_and_eval_writes_its_curve(
    tmp_path, config, keys, tiny, episodes, columns
):
    """Meta-World runs log their meta-training success per iteration (a fraction of that
    iteration's episodes) and the evaluation writes eval_success.json beside eval.json."""
    import json

    from metarl.cli import main as cli_main

    run_dir = tmp_path / "run"
    sets = [*tiny, "env.horizon=20", "optim.iterations=2", "run.num_eval_tasks=2",
            "run.progress=false"]  # fmt: skip
    args = ["train", config, "--run-dir", str(run_dir), "--device", "cpu"]
    assert cli_main([*args, *[a for s in sets for a in ("--set", s)]]) == 0
    metrics = _metrics(run_dir)
    for step in (0, 1):
        for key in keys:
            value = metrics[(step, key)]
            assert 0.0 <= value <= 1.0
            assert value * episodes == pytest.approx(round(value * episodes))
    success = json.loads((run_dir / "eval" / "eval_success.json").read_text())
    assert success["metric"] == "success rate" and len(success["mean"]) == columns
    assert success["num_tasks"] == 2
