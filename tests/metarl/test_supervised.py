"""The supervised driver and the MAML family: learns, resumes exactly, stops on NaN, CLI works."""

import json

import numpy as np
import pytest
import torch

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.maml import multi_step_loss_weights
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SupervisedConfig,
    TaskConfig,
    adaptation_curves,
    build_family,
    task_loss,
    train,
)
from metarl.checkpoint import latest_checkpoint
from metarl.cli import main as cli_main
from metarl.runs import NonFiniteLossError, open_run

CPU = torch.device("cpu")


def _cfg(name="maml", iterations=150, inner_steps=1):
    return SupervisedConfig(
        task=TaskConfig(
            family="sinusoid", shots=10, query_shots=10, test_shots=10, meta_batch_size=10
        ),
        model=ModelConfig(network="mlp", hidden=(40, 40)),
        algo=AlgoConfig(name=name),
        inner=InnerConfig(lr=0.01, steps=inner_steps),
        optim=OptimConfig(iterations=iterations, lr=3e-3),
        run=RunConfig(log_every=10, checkpoint_every=0, progress=False),
    )


def _learner(cfg, seed=0):
    return build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))


def _curve(cfg, learner, params, lrs, steps=1):
    fam = build_family(cfg.task, "test", CPU)
    kwargs = {"num_tasks": 50, "steps": steps, "seed": 123, "lrs": lrs}
    return adaptation_curves(learner, params, fam, **kwargs).mean(0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "mamlpp"])
def test_every_maml_variant_learns_sinusoid_in_seconds(name, tmp_path):
    cfg = _cfg(name, iterations=400, inner_steps=1 if name != "mamlpp" else 2)
    learner = _learner(cfg)
    before = _curve(cfg, learner, learner.init_params(), learner.init_lrs())
    with open_run(tmp_path / "run", cfg) as run:
        result = train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    after = _curve(cfg, learner, result.params, result.lrs)
    assert after[1] < 0.7 * before[1]  # meta-training helps after one step...
    assert after[1] < after[0]  # ...and the step itself helps
    assert (tmp_path / "run" / "metrics.csv").read_text().count("train/loss") == 40


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    cfg = _cfg(iterations=6)
    with open_run(tmp_path / "full", cfg) as run:
        full = train(cfg, _learner(cfg), build_family(cfg.task, "train", CPU), run, CPU)
    half = dataclass_replace(cfg, optim=dataclass_replace(cfg.optim, iterations=3))
    with open_run(tmp_path / "split", half) as run:
        train(half, _learner(half), build_family(cfg.task, "train", CPU), run, CPU)
    with open_run(tmp_path / "split", cfg, resume=True) as run:
        assert run.resumed_from is not None
        resumed = train(cfg, _learner(cfg, seed=99), build_family(cfg.task, "train", CPU), run, CPU)
    for key, value in full.params.items():
        torch.testing.assert_close(resumed.params[key], value, rtol=0, atol=0)


class _FailsAt:
    """Wraps a learner so that its outer loss is NaN from a given iteration on."""

    def __init__(self, learner, iteration):
        self.learner, self.iteration = learner, iteration

    def init_params(self):
        return self.learner.init_params()

    def init_lrs(self):
        return self.learner.init_lrs()

    def outer_loss(self, params, batch, iteration, *, lrs=None):
        out = self.learner.outer_loss(params, batch, iteration, lrs=lrs)
        if iteration >= self.iteration:
            return out._replace(loss=out.loss * float("nan"))
        return out


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = _cfg(iterations=10)
    cfg = dataclass_replace(cfg, run=dataclass_replace(cfg.run, checkpoint_every=2))
    learner = _FailsAt(_learner(cfg), 5)
    with open_run(tmp_path / "run", cfg) as run:
        with pytest.raises(NonFiniteLossError, match="loss"):
            train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name.endswith("00000004.pt")
    state = torch.load(ckpt, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["params"].values())


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "mamlpp"])
def test_maml_variants_take_a_step_and_learn_their_parameters(name, tmp_path):
    cfg = _cfg(name, iterations=2, inner_steps=2)
    learner = _learner(cfg)
    params, lrs = learner.init_params(), learner.init_lrs()
    with open_run(tmp_path / "run", cfg) as run:
        result = train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    assert set(result.params) == set(params)  # the step sizes are a group of their own
    lr_keys = list(result.lrs)
    if name == "metasgd":
        assert len(lr_keys) == 6 and result.lrs["head.weight"].shape == (1, 40)
        assert not torch.equal(result.lrs["head.weight"], lrs["head.weight"])
    elif name == "mamlpp":  # LSLR: one learned rate per layer and step, trained by Adam
        assert len(lr_keys) == 6 and result.lrs["head.bias"].shape == (2,)
        for k in lr_keys:
            assert not torch.equal(result.lrs[k], lrs[k]), k
    elif name == "anil":
        assert learner.adapt_keys == ["head.weight", "head.bias"]
    else:  # the meta-gradient itself: tests/metarl/algorithms/test_maml_meta_gradient.py
        assert not lr_keys and learner.first_order == (name == "fomaml")


def test_anil_inner_loop_leaves_the_body_unchanged():
    cfg = _cfg("anil", iterations=1, inner_steps=3)
    learner = _learner(cfg)
    params = learner.init_params()
    batch = build_family(cfg.task, "train", CPU).sample(3, torch.Generator().manual_seed(0), True)
    result = learner._adapt(params, batch, 3, first_order=True)
    torch.testing.assert_close(result.params["body.0.weight"][1], params["body.0.weight"])
    assert not torch.allclose(result.params["head.weight"][1], params["head.weight"])


def test_multi_step_loss_weights_anneal_towards_the_last_step():
    np.testing.assert_allclose(multi_step_loss_weights(4, 0, 100), [0.25] * 4)
    late = multi_step_loss_weights(4, 100, 100)
    np.testing.assert_allclose(late[:-1], [0.03 / 4] * 3)
    assert late[-1] == pytest.approx(1 - 3 * 0.03 / 4)


def test_cli_train_then_eval_writes_the_adaptation_curve(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "configs/maml/sinusoid.yaml",
        "--set",
        "optim.iterations=3",
        "--set",
        "run.num_eval_tasks=5",
        "--set",
        "eval.steps=2",
        "--run-dir",
        str(run_dir),
        "--seed",
        "3",
    ]
    assert cli_main(args) == 0
    assert "after  2 steps" in capsys.readouterr().out
    result = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert set(result) >= {
        "algorithm",
        "task_family",
        "metric",
        "steps",
        "mean",
        "ci95",
        "num_tasks",
        "seed",
    }
    assert result["steps"] == [0, 1, 2] and result["num_tasks"] == 5 and result["metric"] == "mse"
    assert (
        cli_main(
            [
                "eval",
                str(run_dir),
                "--num-tasks",
                "4",
                "--steps",
                "1",
                "--out",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["steps"] == [0, 1] and again["num_tasks"] == 4
    assert (tmp_path / "e.png").exists() and (tmp_path / "e.csv").exists()


def test_cli_rejects_bad_configs_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo:\n  name: maml\ninner:\n  lr: fast\n")
    assert cli_main(["train", str(bad), "--run-dir", str(tmp_path / "run")]) == 2
    assert "inner.lr" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert (
        cli_main(
            [
                "train",
                "configs/maml/sinusoid.yaml",
                "--set",
                "inner.rl=0.1",
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "inner.rl" in capsys.readouterr().err


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_every_registered_learner_has_the_learner_protocol():
    """A learner the driver cannot call fails here, not at its first training run."""
    import importlib
    import inspect

    from metarl.algorithms.registry import ALGORITHMS

    learners = {n: a.learner for n, a in ALGORITHMS.items() if a.learner is not None}
    assert len(learners) >= 18
    for name, target in learners.items():
        module, cls_name = target.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        for method in ("init_params", "init_lrs", "outer_loss", "adaptation_curve"):
            assert callable(getattr(cls, method, None)), f"{name} lacks {method}"
        for method in ("outer_loss", "adaptation_curve"):
            params = inspect.signature(getattr(cls, method)).parameters
            assert "lrs" in params and params["lrs"].kind is inspect.Parameter.KEYWORD_ONLY, (
                f"{name}.{method} does not take the learned step sizes as lrs="
            )


def test_task_loss_is_mse_loss_and_cross_entropy_to_the_second_derivative() -> None:
    # the regression loss is written out (no Python decomposition of mse_loss's backward under
    # vmap of grad); it computes what F.mse_loss computes, through the inner loop's grad too
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    x, y = torch.randn(5, 6, 3, generator=g, dtype=torch.float64), torch.randn(5, 6, 4)
    labels = torch.randint(0, 4, (5, 6), generator=g)
    for target, reference in (
        (y.double(), torch.nn.functional.mse_loss),
        (labels, torch.nn.functional.cross_entropy),
    ):

        def inner(w, x, t, loss):  # one SGD step, then the loss again
            step = torch.func.grad(lambda v: loss(x @ v.T, t))(w)
            return loss(x @ (w - 0.1 * step).T, t)

        batched = torch.func.vmap(inner, in_dims=(None, 0, 0, None))
        got, want = batched(w, x, target, task_loss), batched(w, x, target, reference)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        (got_grad,) = torch.autograd.grad(got.sum(), w)
        (want_grad,) = torch.autograd.grad(want.sum(), w)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-15)
