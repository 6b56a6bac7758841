"""Reptile: the inner loop vs torch.optim.Adam in a loop over tasks, one driver step vs the hand
formula, and it learns sinusoids."""

import dataclasses

import pytest
import torch
from torch.func import functional_call

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.reptile import (
    ReptileLearner,
    inner_loop,
    minibatch_indices,
    reptile_pseudo_loss,
)
from metarl.algorithms.supervised import (
    AlgoConfig,
    InnerConfig,
    ModelConfig,
    OptimConfig,
    ReptileConfig,
    RunConfig,
    SupervisedConfig,
    TaskConfig,
    adaptation_curves,
    build_family,
    task_loss,
    task_metric,
    train,
)
from metarl.config import load_config
from metarl.nn import Conv4
from metarl.runs import open_run

CPU = torch.device("cpu")


def _cfg(iterations=1, shots=8, inner_batch_size=4, inner_steps=3, meta_batch_size=3, **reptile):
    return SupervisedConfig(
        task=TaskConfig(
            family="sinusoid",
            shots=shots,
            query_shots=5,
            test_shots=10,
            test_query_shots=50,
            meta_batch_size=meta_batch_size,
            phase_range=(0.0, 2 * torch.pi),
        ),
        model=ModelConfig(network="mlp", hidden=(16, 16), activation="tanh"),
        algo=AlgoConfig(name="reptile"),
        inner=InnerConfig(lr=0.01, steps=inner_steps),
        reptile=ReptileConfig(batch_size=inner_batch_size, adam_beta2=0.99, **reptile),
        optim=OptimConfig(optimizer="sgd", lr=0.7, schedule="linear", iterations=iterations),
        run=RunConfig(log_every=1, checkpoint_every=0, progress=False),
    )


def _learner(cfg, seed=0):
    return build_supervised_learner(cfg, CPU, torch.Generator().manual_seed(seed))


def _random_params(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g, dtype=dtype),
        "b": torch.randn(4, generator=g, dtype=dtype),
    }


# ----------------------------------------------------------------------------------------------
# minibatches and the pseudo-loss
# ----------------------------------------------------------------------------------------------


def test_minibatch_indices_cycle_through_shuffled_epochs():
    idx = minibatch_indices(5, 2, 7, torch.Generator().manual_seed(0))
    assert idx.shape == (7, 2) and idx.dtype == torch.int64
    flat = idx.flatten()
    for start in (0, 5):  # each complete epoch is a permutation, even across minibatches
        assert sorted(flat[start : start + 5].tolist()) == list(range(5))
    again = minibatch_indices(5, 2, 7, torch.Generator().manual_seed(0))
    torch.testing.assert_close(idx, again, rtol=0, atol=0)
    assert minibatch_indices(3, 4, 0, torch.Generator()).shape == (0, 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        minibatch_indices(5, 0, 3, torch.Generator())


def test_pseudo_loss_gradient_is_theta_minus_phi():
    theta = {k: v.requires_grad_() for k, v in _random_params(0).items()}
    phi = _random_params(1)
    loss = reptile_pseudo_loss(theta, phi)
    expected = 0.5 * sum(((theta[k] - phi[k]) ** 2).sum() for k in theta)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for k in theta:
        torch.testing.assert_close(theta[k].grad, (theta[k] - phi[k]).detach())
    with pytest.raises(ValueError, match="adapted_mean must have keys"):
        reptile_pseudo_loss(theta, {"w": phi["w"]})


# ----------------------------------------------------------------------------------------------
# the inner loop: vmapped vs a loop over tasks
# ----------------------------------------------------------------------------------------------


def _conv4():
    # float64: the conv biases feed batch norm, which cancels them, so their gradient is rounding
    # noise that Adam's normalised step would amplify to +-lr in float32
    return Conv4(3, filters=4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _conv_problem(tasks=2, steps=3, batch=4, query=5):
    model = _conv4()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(tasks, steps, batch, 1, 28, 28, generator=g, dtype=torch.float64)
    y = torch.randint(3, (tasks, steps, batch), generator=g)
    qx = torch.rand(tasks, query, 1, 28, 28, generator=g, dtype=torch.float64)
    qy = torch.randint(3, (tasks, query), generator=g)

    def loss(p, bx, by):
        return task_loss(functional_call(model, p, (bx,)), by)

    def metric(p, bx, by):
        return task_metric(functional_call(model, p, (bx,)), by)

    return dict(model.named_parameters()), loss, metric, (x, y), (qx, qy)


def test_inner_loop_is_adam_on_the_minibatches_of_each_task():
    """The vmapped loop equals torch.optim.Adam(betas=(0, beta2)) stepping an nn.Module per task."""
    params, loss, _, (x, y), _ = _conv_problem()
    result = inner_loop(params, loss, (x, y), lr=0.01, beta2=0.99)
    assert result.losses.shape == (2, 3) and len(result.trajectory) == 4
    for i in range(x.shape[0]):
        model = _conv4()
        opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.0, 0.99))
        losses = []
        for step in range(x.shape[1]):
            opt.zero_grad()
            step_loss = task_loss(model(x[i, step]), y[i, step])
            step_loss.backward()
            opt.step()
            losses.append(step_loss.detach())
        for k, v in model.named_parameters():
            torch.testing.assert_close(result.params[k][i], v.detach(), rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(result.losses[i], torch.stack(losses), rtol=1e-8, atol=1e-9)


def test_inner_loop_rejects_bad_batches():
    params, loss, _, (x, y), _ = _conv_problem()
    with pytest.raises(ValueError, match="sharing"):
        inner_loop(params, loss, (x, y[:, :2]), lr=0.01, beta2=0.99)
    with pytest.raises(ValueError, match="sharing"):
        inner_loop(params, loss, (x[0], y[0]), lr=0.01, beta2=0.99)


# ----------------------------------------------------------------------------------------------
# the learner in the driver
# ----------------------------------------------------------------------------------------------


def test_one_driver_step_is_reptiles_update(tmp_path):
    """theta + eps (mean_i phi_i - theta), phi_i from torch.optim.Adam in a loop over tasks.

    With the minibatch as large as the support set, every inner step sees the whole set (in
    some order), so the hand computation needs no knowledge of the minibatch order.
    """
    cfg = _cfg(iterations=1, shots=8, inner_batch_size=8)
    learner = _learner(cfg)
    theta = learner.init_params()
    with open_run(tmp_path / "run", cfg) as run:
        result = train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    gen = torch.Generator().manual_seed(cfg.run.seed)  # the driver's first meta-batch
    batch = build_family(cfg.task, "train", CPU).sample(3, gen, training=True)
    adapted = []
    for i in range(batch.num_tasks):
        phi = {k: v.detach().clone().requires_grad_() for k, v in theta.items()}
        opt = torch.optim.Adam(phi.values(), lr=0.01, betas=(0.0, 0.99))
        for _ in range(cfg.inner.steps):
            opt.zero_grad()
            pred = functional_call(learner.model, phi, (batch.support_x[i],))
            task_loss(pred, batch.support_y[i]).backward()
            opt.step()
        adapted.append(phi)
    for k, v in theta.items():
        mean_phi = torch.stack([phi[k].detach() for phi in adapted]).mean(0)
        expected = v.detach() + 0.7 * (mean_phi - v.detach())
        torch.testing.assert_close(result.params[k], expected, rtol=1e-5, atol=1e-6)


def test_outer_loss_is_deterministic_in_the_iteration():
    cfg = _cfg()
    learner = _learner(cfg)
    params = learner.init_params()
    batch = build_family(cfg.task, "train", CPU).sample(3, torch.Generator(), training=True)
    first = learner.outer_loss(params, batch, 5)
    assert set(first.metrics) == {"query_mse", "inner_loss_first", "inner_loss_last"}
    torch.testing.assert_close(first.loss, learner.outer_loss(params, batch, 5).loss)
    torch.testing.assert_close(first.loss, _learner(cfg).outer_loss(params, batch, 5).loss)
    assert not torch.equal(first.loss, learner.outer_loss(params, batch, 6).loss)


def test_adaptation_curve_shape_and_reproducibility():
    cfg = _cfg(eval_batch_size=5)
    learner = _learner(cfg)
    params = {k: v.detach() for k, v in learner.init_params().items()}
    family = build_family(cfg.task, "test", CPU)
    curve = adaptation_curves(learner, params, family, num_tasks=4, steps=6, seed=3)
    assert curve.shape == (4, 7)
    batch = family.sample(4, torch.Generator().manual_seed(3), training=False)
    pred = torch.func.vmap(lambda x: functional_call(learner.model, params, (x,)))(batch.query_x)
    step0 = ((pred - batch.query_y) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(torch.from_numpy(curve[:, 0]), step0)
    again = adaptation_curves(_learner(cfg), params, family, num_tasks=4, steps=6, seed=3)
    torch.testing.assert_close(torch.from_numpy(again), torch.from_numpy(curve), rtol=0, atol=0)


def test_bad_minibatch_size_is_rejected():
    with pytest.raises(ValueError, match="reptile.batch_size must be >= 1"):
        ReptileLearner(_cfg(inner_batch_size=0), CPU, torch.Generator())


def test_reptile_learns_sinusoid_in_seconds(tmp_path):
    cfg = _cfg(iterations=300, shots=10, inner_batch_size=10, inner_steps=3, meta_batch_size=5)
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, hidden=(32, 32)),
        inner=dataclasses.replace(cfg.inner, lr=0.03),
        optim=dataclasses.replace(cfg.optim, lr=1.0),
    )
    learner = _learner(cfg)
    test = build_family(cfg.task, "test", CPU)

    def mse(params):
        curve = adaptation_curves(learner, params, test, num_tasks=100, steps=8, seed=7)
        return curve.mean(0)

    before = mse({k: v.detach() for k, v in learner.init_params().items()})
    with open_run(tmp_path / "run", cfg) as run:
        result = train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU)
    after = mse(result.params)
    assert after[8] < 0.6 * before[8]  # meta-training makes 8 inner steps count...
    assert after[8] < 0.6 * after[0]  # ...and adaptation itself helps


def test_reptile_configs_use_sgd_on_a_linear_schedule():
    from pathlib import Path

    paths = sorted(Path(__file__).resolve().parents[3].glob("configs/reptile/*.yaml"))
    assert len(paths) == 7  # Omniglot 5/20-way 1/5-shot, sinusoid, miniImageNet 5-way 1/5-shot
    for path in paths:
        cfg = load_config(SupervisedConfig, path)
        assert (cfg.algo.name, cfg.optim.optimizer, cfg.optim.schedule) == (
            "reptile",
            "sgd",
            "linear",
        )
