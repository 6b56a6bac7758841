"""MAML sinusoid (issue 16): cbfinn/maml's MLP init, the shipped config, bitwise repeatable runs."""

import math

import pytest
import torch

from metarl.algorithms import build_supervised_learner
from metarl.algorithms.supervised import SupervisedConfig, build_family, train
from metarl.config import load_config
from metarl.nn import MLP, init_linear_
from metarl.nn.mlp import init_linear_maml_
from metarl.runs import open_run

CPU = torch.device("cpu")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_maml_init_is_truncated_normal_with_std_001_and_zero_biases() -> None:
    layer = torch.nn.Linear(400, 400)
    init_linear_maml_(layer, _gen())
    w = layer.weight.detach().double()
    assert torch.count_nonzero(layer.bias) == 0
    assert w.abs().max() <= 0.02  # tf.truncated_normal redraws beyond 2 std
    # Var of N(0, s^2) truncated to ±2s: s^2 (1 - 2·2·φ(2) / (Φ(2) − Φ(−2)))
    phi2 = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    expected_std = 0.01 * math.sqrt(1 - 4 * phi2 / mass)  # 0.00880
    assert w.std().item() == pytest.approx(expected_std, rel=0.01)  # 160k draws
    assert w.mean().abs().item() < 3 * expected_std / 400


def test_mlp_init_option_picks_the_init_and_keeps_the_default_stream() -> None:
    maml = MLP(1, [40, 40], 1, init="maml", generator=_gen(3))
    assert all(torch.count_nonzero(p) == 0 for k, p in maml.named_parameters() if "bias" in k)
    again = MLP(1, [40, 40], 1, init="maml", generator=_gen(3))
    torch.testing.assert_close(dict(maml.named_parameters()), dict(again.named_parameters()))
    # the default is PyTorch's init drawn layer by layer, as before the option existed
    default = MLP(1, [40, 40], 1, generator=_gen(3))
    gen = _gen(3)
    for name in ("body.0", "body.2", "head"):
        layer = torch.nn.Linear(*reversed(default.get_submodule(name).weight.shape))
        init_linear_(layer, gen)
        assert torch.equal(layer.weight, default.get_submodule(name).weight)
        assert torch.equal(layer.bias, default.get_submodule(name).bias)
    with pytest.raises(ValueError, match="init must be one of"):
        MLP(1, [4], 1, init="xavier")  # type: ignore[arg-type]


def test_shipped_sinusoid_config_has_the_paper_settings() -> None:
    cfg = load_config(SupervisedConfig, "configs/maml/sinusoid.yaml")
    assert (cfg.task.shots, cfg.task.test_shots, cfg.task.meta_batch_size) == (10, 5, 25)
    assert cfg.task.phase_range == pytest.approx((0.0, math.pi))
    assert (cfg.model.hidden, cfg.model.activation, cfg.model.init) == ((40, 40), "relu", "torch")
    assert (cfg.algo.name, cfg.inner.lr, cfg.inner.steps) == ("maml", 0.01, 1)
    assert (cfg.optim.lr, cfg.optim.iterations, cfg.optim.grad_clip) == (1e-3, 70000, None)


def test_sinusoid_training_is_bitwise_repeatable_at_a_fixed_seed(tmp_path) -> None:
    cfg = load_config(
        SupervisedConfig,
        "configs/maml/sinusoid.yaml",
        ["optim.iterations=4", "run.checkpoint_every=0", "run.progress=false", "run.seed=7"],
    )
    results = []
    for name in ("a", "b"):
        learner = build_supervised_learner(cfg, CPU, _gen(cfg.run.seed))
        with open_run(tmp_path / name, cfg) as run:
            results.append(train(cfg, learner, build_family(cfg.task, "train", CPU), run, CPU))
    for key, value in results[0].params.items():
        assert torch.equal(results[1].params[key], value), key
