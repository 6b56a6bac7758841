"""scripts/bench_envs.py: the paired ratio compares windows of the same round."""

import pytest

from tests.helpers.scripts import load_script


def test_paired_ratio_is_the_median_of_same_round_ratios():
    bench = load_script("bench_envs")
    # the machine slows down threefold over the run; each row keeps 0.9x / 1.0x of the reference
    rates = {"lockstep": [100.0, 50.0, 30.0, 60.0], "process": [90.0, 45.0, 27.0, 54.0]}
    assert bench.paired_ratio(rates, "process", "lockstep") == pytest.approx(0.9)
    assert bench.paired_ratio(rates, "lockstep", "lockstep") == 1.0
    # by hand: window ratios 0.5, 2 and 1, median 1
    rates = {"a": [10.0, 80.0, 40.0], "b": [20.0, 40.0, 40.0]}
    assert bench.paired_ratio(rates, "a", "b") == pytest.approx(1.0)


def test_step_breakdown_layers_are_the_row_differences(monkeypatch):
    from tests.scripts.test_scripts import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # as python does for the script itself
    bench = load_script("bench_step_breakdown")
    names = ["raw", "engine", "lockstep", "process engine", "vector env", "bookkeeping", "bare"]
    names.append("least outputs")
    micros = dict(zip(names, [700, 710, 760, 800, 815, 9, 785, 772], strict=True))
    layers = list(bench._layers(micros, names).values())
    # by hand: lockstep - raw, process - lockstep, bare - lockstep, process - bare, engine - raw,
    # vector - process, bookkeeping, vector - lockstep, least outputs - lockstep
    assert layers == [60, 40, 25, 15, 10, 15, 9, 55, 12]


@pytest.mark.slow
def test_step_breakdown_prints_its_tables(tmp_path):
    import json
    import subprocess
    import sys

    from tests.scripts.test_scripts import ROOT

    def run(*args):
        cmd = [sys.executable, "scripts/bench_step_breakdown.py", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)

    bad = run("--num-envs", "5", "--workers", "2")
    assert bad.returncode == 2 and "--num-envs 5 is not a multiple of --workers 2" in bad.stderr
    bad = run("--rounds", "0")
    assert bad.returncode == 2 and "--rounds must be >= 1" in bad.stderr
    bad = run("--settle", "-1")
    assert bad.returncode == 2 and "--settle must be a number of seconds >= 0" in bad.stderr
    out_file = tmp_path / "b.json"
    args = ("--seconds", "0.1", "--rounds", "2", "--num-envs", "4", "--settle", "0")
    proc = run(*args, "--out", str(out_file))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for row in ("raw mj_step, one slice (2 envs)", "ProcessEngine alone (2 processes, 4 envs)"):
        assert f"| {row} |" in proc.stdout
    assert "the bare lockstep loop in this run" in proc.stdout
    figures = json.loads(out_file.read_text())
    assert len(figures["micros"]) == 8 and all(len(w) == 2 for w in figures["windows"].values())
    assert figures["micros"]["vector env, process backend (4 envs)"] > 0
    assert figures["micros"]["ProcessEngine, slices only stepping MuJoCo (2 processes, 4 envs)"] > 0
    assert "slices that only step MuJoCo" in proc.stdout
    assert "also gathers the observations and computes a reward" in proc.stdout
    assert 0 < figures["paired_least_outputs"]


def test_median_interval_is_the_binomial_order_statistic_pair():
    bench = load_script("bench_envs")
    # n = 8: P(Binomial(8, 1/2) < 1) = 1/256, coverage 0.992; < 2: 9/256, coverage 0.93 < 0.95,
    # so the interval is the smallest and the largest value
    values = [0.84, 0.87, 1.03, 0.97, 0.82, 1.09, 0.97, 0.75]
    assert bench.median_interval(values) == (0.75, 1.09)
    # n = 24: P(B < 7) = 0.0113 (coverage 0.977), P(B < 8) = 0.0320 (0.936): 7th and 18th values
    assert bench.median_interval([float(i) for i in range(24, 0, -1)]) == (7.0, 18.0)
    # n = 5 cannot reach 95 % (the extremes cover 1 - 2/32 = 0.9375)
    assert bench.median_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert bench.median_interval([1.0, 2.0, 3.0, 4.0, 5.0], level=0.9) == (1.0, 5.0)


@pytest.mark.slow
def test_lockstep_only_times_the_five_rows_of_each_mujoco_env(tmp_path):
    import json
    import subprocess
    import sys

    from tests.scripts.test_scripts import ROOT

    def run(*args):
        cmd = [sys.executable, "scripts/bench_envs.py", *args]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    bad = run("--lockstep-only", "--metaworld-only")
    assert bad.returncode == 2 and "--lockstep-only times the quiet MuJoCo tables" in bad.stderr
    bad = run("--lockstep-only", "--settle", "-1")
    assert bad.returncode == 2 and "--settle must be a number of seconds >= 0" in bad.stderr
    out_file = tmp_path / "b.json"
    proc = run(
        "--lockstep-only",
        "--seconds",
        "0.3",
        "--rounds",
        "3",
        "--num-envs",
        "4",
        "--settle",
        "0",
        "--out",
        str(out_file),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out_file.read_text())
    assert sorted(figures) == ["metarl/AntDir-v0", "metarl/HalfCheetahVel-v0"]
    lockstep = "raw mj_step (2 processes in lockstep)"
    process = "metarl process (2 processes: this one + 1 workers)"
    for env_id, table in figures.items():
        least = "raw mj_step + obs and reward, 7 numpy calls (2 processes in lockstep)"
        tight = "raw mj_step, tight loop (2 processes in lockstep)"
        assert sorted(table["windows"]) == sorted([lockstep, tight, least, "metarl sync", process])
        for key in ("process_over_least_outputs", "process_over_tight"):
            assert table[key]["paired"] > 0
        assert all(len(w) == 3 and min(w) > 0 for w in table["windows"].values())
        assert table["paired"]["reference"] == lockstep
        assert (
            f"{env_id} (" in proc.stdout and "the process backend against lockstep" in proc.stdout
        )
    assert "SyncVectorEnv" not in proc.stdout and "neighbour" not in proc.stdout


def _raw_beside_gymnasium(v5_id: str, n: int, horizon: int):
    """A raw stepper (3 warm-up steps taken) and the v5 env stepped alike from reset(seed=0)."""
    import gymnasium as gym

    bench = load_script("bench_envs")
    stepper = bench.raw_stepper(v5_id, n, horizon=horizon, seed=0)
    env = gym.make(v5_id)
    env.reset(seed=0)
    acts = bench._actions(env.action_space, n)
    for k in range(3):
        env.step(acts[k][0])
    return stepper, env


def test_raw_ant_rows_compute_the_contact_forces_the_env_reads():
    """Ant's observation reads cfrc_ext: the bare loops run mj_rnePostConstraint as the env must."""
    import numpy as np

    stepper, env = _raw_beside_gymnasium("Ant-v5", 1, horizon=100)
    data = env.unwrapped.data
    np.testing.assert_array_equal(stepper.datas[0].qpos, data.qpos)
    np.testing.assert_array_equal(stepper.datas[0].cfrc_ext, data.cfrc_ext)
    assert np.abs(data.cfrc_ext).sum() > 0  # a real comparison: there are contact forces
    env.close()
    stepper.close()


def test_raw_rows_run_the_envs_episodes_from_gymnasiums_reset():
    """The bare loops step what the vector env steps: v5's reset, then ``horizon``-step episodes."""
    import numpy as np

    stepper, env = _raw_beside_gymnasium("HalfCheetah-v5", 2, horizon=5)
    # the first sub-env started where gymnasium's reset(seed=0) starts, and stepped alike
    np.testing.assert_array_equal(stepper.datas[0].qpos, env.unwrapped.data.qpos)
    np.testing.assert_array_equal(stepper.datas[0].qvel, env.unwrapped.data.qvel)
    env.close()
    stepper._one()
    assert all(d.time > 0 for d in stepper.datas)
    stepper._one()  # the fifth step ends the episode: every sub-env starts a new one
    assert all(d.time == 0.0 for d in stepper.datas)
    assert not np.array_equal(stepper.datas[0].qpos, stepper.datas[1].qpos)  # fresh noise each
    stepper.close()


def test_the_physics_only_engine_steps_mujoco_and_returns_its_first_step(monkeypatch):
    """The breakdown's bound row: what a ProcessEngine slice calls only advances the physics."""
    import numpy as np

    from envs.registration import env_info
    from tests.scripts.test_scripts import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    bench = load_script("bench_step_breakdown")
    env_id = "metarl/HalfCheetahVel-v0"
    engine = bench.PhysicsOnlyEngine(2, engine_id=env_id, **env_info(env_id).kwargs)
    engine.seed([0, 1])
    engine.reset(np.arange(2))
    actions = np.full((2, 6), 0.5)
    first = engine.step_checked(actions)
    time = engine.datas[0].time
    assert engine.step_checked(actions) is first and engine.step(actions) is first
    assert engine.datas[0].time == pytest.approx(3 * time)  # the physics stepped each time
    # what the process backend's slices call: the physics, then the stored step copied out
    out = {"obs": np.zeros_like(first.obs), "reward": np.zeros(2), "terminated": np.ones(2, bool)}
    out |= {k: np.zeros(2) for k in (*first.reward_terms, *first.extras)}
    engine.step_into(actions, out)
    assert engine.datas[0].time == pytest.approx(4 * time)
    np.testing.assert_array_equal(out["obs"], first.obs)
    np.testing.assert_array_equal(out["reward"], first.reward)
    assert not out["terminated"].any()
    np.testing.assert_array_equal(out["x_velocity"], first.extras["x_velocity"])
    engine.close()


def test_the_least_outputs_loop_gathers_the_state_and_computes_the_reward():
    """The breakdown's floor row does the physics plus a real observation and reward."""
    import numpy as np

    bench = load_script("bench_envs")
    stepper = bench.raw_stepper("HalfCheetah-v5", 3, horizon=100, outputs=True)  # 3 steps taken
    x_before = np.array([d.qpos[0] for d in stepper.datas])
    stepper._one()  # the fourth step: actions[3]
    expected_obs = np.stack([np.concatenate([d.qpos, d.qvel]) for d in stepper.datas])
    np.testing.assert_array_equal(stepper.outputs["obs"], expected_obs)
    a = bench._actions(stepper.action_space, 3)[3].astype(np.float64)
    x_after = expected_obs[:, 0]
    by_hand = (x_after - x_before) / 0.05 - 0.1 * (a**2).sum(axis=1)  # HalfCheetah-v5's weight
    np.testing.assert_allclose(stepper.outputs["reward"], by_hand, rtol=1e-6)  # float32 actions
    ant = bench.raw_stepper("Ant-v5", 2, horizon=100, outputs=True)  # Ant-v5's weight, 0.5
    x_before = np.array([d.qpos[0] for d in ant.datas])
    ant._one()
    a = bench._actions(ant.action_space, 2)[3].astype(np.float64)  # its fourth step too
    x_after = np.array([d.qpos[0] for d in ant.datas])
    by_hand = (x_after - x_before) / 0.05 - 0.5 * (a**2).sum(axis=1)
    np.testing.assert_allclose(ant.outputs["reward"], by_hand, rtol=1e-6)
    ant.close()
    assert bench.raw_stepper("HalfCheetah-v5", 2, horizon=100).outputs == {}
    stepper.close()


def test_the_tight_loop_steps_what_the_gymnasium_style_loop_steps():
    """The tight reference loop differs only in the Python around mj_step, not in the physics."""
    import numpy as np

    bench = load_script("bench_envs")
    for v5_id in ("HalfCheetah-v5", "Ant-v5"):
        plain = bench.raw_stepper(v5_id, 3, horizon=4)
        tight = bench.raw_stepper(v5_id, 3, horizon=4, tight=True)
        for k in range(6):  # across an episode boundary
            plain.step(k)
            tight.step(k)
            for mine, theirs in zip(tight.datas, plain.datas, strict=True):
                np.testing.assert_array_equal(mine.qpos, theirs.qpos)
                np.testing.assert_array_equal(mine.cfrc_ext, theirs.cfrc_ext)
        assert np.abs(plain.datas[0].qvel).sum() > 0
        plain.close()
        tight.close()
