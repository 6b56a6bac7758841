"""Tests for the functional inner loop: known answers, loop-vs-vmap twins, finite differences."""

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from metarl.functional import (
    AdaptResult,
    adapt,
    adapt_trajectory,
    batched_adapt,
    batched_adapt_trajectory,
    inner_step,
)
from metarl.nn import MLP

DTYPE = torch.float64
TASKS, SHOTS = 3, 5
HEAD = ("head.weight", "head.bias")


def _mlp(hidden: tuple[int, ...] = (8, 8), activation: str = "relu") -> MLP:
    return MLP(
        1, hidden, 1, activation=activation, generator=torch.Generator().manual_seed(0), dtype=DTYPE
    )


def _mse(model: MLP) -> Callable[[dict[str, Tensor], tuple[Tensor, Tensor]], Tensor]:
    def loss_fn(params: dict[str, Tensor], data: tuple[Tensor, Tensor]) -> Tensor:
        x, y = data
        return (functional_call(model, params, (x,)) - y).square().mean()

    return loss_fn


def _sinusoid_tasks(seed: int, tasks: int = TASKS) -> tuple[tuple[Tensor, Tensor], ...]:
    """Support and query sets ``[task, shot, 1]`` of y = A sin(x - phase) (MAML's sinusoid)."""
    g = torch.Generator().manual_seed(seed)
    amp = 0.1 + 4.9 * torch.rand(tasks, 1, 1, generator=g, dtype=DTYPE)
    phase = torch.pi * torch.rand(tasks, 1, 1, generator=g, dtype=DTYPE)
    x = 10 * torch.rand(tasks, 2 * SHOTS, 1, generator=g, dtype=DTYPE) - 5
    y = amp * torch.sin(x - phase)
    return (x[:, :SHOTS], y[:, :SHOTS]), (x[:, SHOTS:], y[:, SHOTS:])


def _leaf_params(model: MLP) -> dict[str, Tensor]:
    return {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}


def _meta_sgd_lr(params: dict[str, Tensor]) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1)
    # Meta-SGD initialises alpha from U[0.005, 0.1] (Li et al. 2017).
    return {
        k: (0.005 + 0.095 * torch.rand(v.shape, generator=g, dtype=DTYPE)).requires_grad_()
        for k, v in params.items()
    }


def _lslr(params: dict[str, Tensor], steps: int) -> list[dict[str, Tensor]]:
    # MAML++ LSLR: one learned scalar per parameter tensor and per step.
    return [
        {k: torch.tensor(0.05 + 0.01 * i, dtype=DTYPE, requires_grad=True) for k in params}
        for i in range(steps)
    ]


def _lr_tensors(inner_lr: object) -> list[Tensor]:
    if isinstance(inner_lr, dict):
        return list(inner_lr.values())
    if isinstance(inner_lr, list):
        return [t for d in inner_lr for t in d.values()]
    return []


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------


def _linear_loss(params: dict[str, Tensor], data: tuple[Tensor, Tensor]) -> Tensor:
    x, y = data
    return (params["w"] * x + params["b"] - y).square().mean()


def _linear_setup() -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
    params = {
        "w": torch.tensor(2.0, dtype=DTYPE, requires_grad=True),
        "b": torch.tensor(0.5, dtype=DTYPE, requires_grad=True),
    }
    data = (torch.tensor([1.0, 2.0], dtype=DTYPE), torch.tensor([1.0, 3.0], dtype=DTYPE))
    return params, data


def test_one_step_on_linear_model_equals_hand_computed_update() -> None:
    params, data = _linear_setup()
    # residuals r = 2x + 0.5 - y = [1.5, 1.5]; dL/dw = mean(2 r x) = 4.5; dL/db = mean(2 r) = 3.
    result = adapt_trajectory(params, _linear_loss, data, steps=1, inner_lr=0.1)
    torch.testing.assert_close(result.params["w"], torch.tensor(2.0 - 0.1 * 4.5, dtype=DTYPE))
    torch.testing.assert_close(result.params["b"], torch.tensor(0.5 - 0.1 * 3.0, dtype=DTYPE))
    torch.testing.assert_close(result.losses, torch.tensor([2.25], dtype=DTYPE))
    stepped = inner_step(params, {"w": torch.tensor(4.5, dtype=DTYPE)}, 0.1)
    torch.testing.assert_close(stepped["w"], result.params["w"])
    assert stepped["b"] is params["b"]


def test_per_step_learning_rates_are_used_in_order() -> None:
    params, data = _linear_setup()
    lrs = [{"w": torch.tensor(0.1, dtype=DTYPE), "b": torch.tensor(0.0, dtype=DTYPE)}, 0.2]
    result = adapt_trajectory(params, _linear_loss, data, steps=2, inner_lr=lrs)
    by_hand = params
    for lr in lrs:
        grads = torch.autograd.grad(_linear_loss(by_hand, data), list(by_hand.values()))
        by_hand = inner_step(by_hand, dict(zip(by_hand, grads, strict=True)), lr)
    torch.testing.assert_close(result.params, by_hand)
    torch.testing.assert_close(result.trajectory[1]["b"], params["b"])  # lr 0 for b in step 0


def test_trajectory_and_losses_line_up() -> None:
    model = _mlp()
    params, (support, _) = _leaf_params(model), _sinusoid_tasks(0)
    data = (support[0][0], support[1][0])
    steps = 3
    result = adapt_trajectory(params, _mse(model), data, steps=steps, inner_lr=0.01)
    assert isinstance(result, AdaptResult)
    assert len(result.trajectory) == steps + 1 and result.losses.shape == (steps,)
    assert all(result.trajectory[0][k] is params[k] for k in params)
    torch.testing.assert_close(result.trajectory[-1], result.params)
    expected = torch.stack([_mse(model)(p, data) for p in result.trajectory[:-1]])
    torch.testing.assert_close(result.losses, expected)
    assert result.losses[-1] < result.losses[0]  # the inner loop learns


def test_zero_steps_returns_params_unchanged() -> None:
    params, data = _linear_setup()
    result = adapt_trajectory(params, _linear_loss, data, steps=0, inner_lr=0.1)
    assert result.params == params and result.losses.shape == (0,)
    x = torch.ones(2, 3, dtype=DTYPE)
    batched = batched_adapt_trajectory(params, _linear_loss, (x, x), steps=0, inner_lr=0.1)
    assert batched.params["w"].shape == (2,) and batched.losses.shape == (2, 0)


def test_step_index_is_passed_to_loss_fn() -> None:
    params, data = _linear_setup()
    seen: list[int] = []

    def loss_fn(p: dict[str, Tensor], d: tuple[Tensor, Tensor], step: int) -> Tensor:
        seen.append(step)
        return _linear_loss(p, d)

    adapt(params, loss_fn, data, steps=3, inner_lr=0.1, step_arg=True)
    x = torch.ones(2, 2, dtype=DTYPE)
    batched_adapt(params, loss_fn, (x, x), steps=2, inner_lr=0.1, step_arg=True)
    assert seen == [0, 1, 2, 0, 1]


def test_inputs_are_not_mutated_and_eval_works_under_no_grad() -> None:
    model = _mlp()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    before = {k: v.clone() for k, v in params.items()}
    support, _ = _sinusoid_tasks(0)
    with torch.no_grad():
        adapted = adapt(params, _mse(model), (support[0][0], support[1][0]), steps=2, inner_lr=0.01)
        batched = batched_adapt(params, _mse(model), support, steps=2, inner_lr=0.01)
    torch.testing.assert_close(params, before, rtol=0, atol=0)
    assert not any(v.requires_grad for v in params.values())
    torch.testing.assert_close(batched["head.bias"][0], adapted["head.bias"])
    assert not torch.equal(adapted["head.bias"], params["head.bias"])


# --------------------------------------------------------------------------------------------
# Trusted twin: vmap over tasks equals a Python loop over tasks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("lr_kind", ["float", "meta_sgd", "lslr"])
@pytest.mark.parametrize("adapt_keys", [None, HEAD])
def test_batched_adapt_equals_loop_over_tasks(
    first_order: bool, lr_kind: str, adapt_keys: tuple[str, ...] | None
) -> None:
    model, steps = _mlp(), 2
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    keys = adapt_keys or tuple(params)
    inner_lr: object = {
        "float": 0.01,
        "meta_sgd": _meta_sgd_lr({k: params[k] for k in keys}),
        "lslr": _lslr({k: params[k] for k in keys}, steps),
    }[lr_kind]
    kwargs = dict(steps=steps, inner_lr=inner_lr, first_order=first_order, adapt_keys=adapt_keys)
    wrt = list(params.values()) + _lr_tensors(inner_lr)

    batched = batched_adapt_trajectory(params, loss_fn, support, **kwargs)
    batched_grads = torch.autograd.grad(vmap(loss_fn)(batched.params, query).sum(), wrt)

    loop_loss = torch.zeros((), dtype=DTYPE)
    for t in range(TASKS):
        one = adapt_trajectory(params, loss_fn, (support[0][t], support[1][t]), **kwargs)
        for k in params:
            torch.testing.assert_close(batched.params[k][t], one.params[k], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched.losses[t], one.losses, rtol=1e-12, atol=1e-12)
        loop_loss = loop_loss + loss_fn(one.params, (query[0][t], query[1][t]))
    loop_grads = torch.autograd.grad(loop_loss, wrt)
    for got, want in zip(batched_grads, loop_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_chunked_batched_adapt_equals_unchunked() -> None:
    model = _mlp()
    params = _leaf_params(model)
    support, query = _sinusoid_tasks(0)
    results = []
    for chunk_size in (None, 2):
        adapted = batched_adapt(
            params, _mse(model), support, steps=2, inner_lr=0.01, chunk_size=chunk_size
        )
        outer = vmap(_mse(model))(adapted, query).sum()
        results.append((adapted, torch.autograd.grad(outer, list(params.values()))))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


def test_batched_adapt_without_expanding_shared_params() -> None:
    model = _mlp()
    params = _leaf_params(model)
    support, query = _sinusoid_tasks(0)
    adapted = batched_adapt(
        params, _mse(model), support, steps=1, inner_lr=0.01, adapt_keys=HEAD, expand_shared=False
    )
    assert adapted["body.0.weight"] is params["body.0.weight"]
    assert adapted["head.weight"].shape == (TASKS, *params["head.weight"].shape)
    in_dims = ({k: 0 if k in HEAD else None for k in adapted}, 0)
    expanded = batched_adapt(params, _mse(model), support, steps=1, inner_lr=0.01, adapt_keys=HEAD)
    torch.testing.assert_close(
        vmap(_mse(model), in_dims=in_dims)(adapted, query), vmap(_mse(model))(expanded, query)
    )


def test_hessian_vector_product_through_batched_adapt_equals_loop() -> None:
    # MAML-TRPO differentiates the meta-gradient once more (Hessian-vector products of the KL).
    model = _mlp(activation="tanh")
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    vector = [
        torch.randn(p.shape, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
        for p in params.values()
    ]

    def hvp(outer: Tensor) -> tuple[Tensor, ...]:
        grads = torch.autograd.grad(outer, list(params.values()), create_graph=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vector, strict=True))
        return torch.autograd.grad(dot, list(params.values()))

    adapted = batched_adapt(params, loss_fn, support, steps=1, inner_lr=0.1)
    batched = hvp(vmap(loss_fn)(adapted, query).sum())
    loop_loss = torch.zeros((), dtype=DTYPE)
    for t in range(TASKS):
        one = adapt(params, loss_fn, (support[0][t], support[1][t]), steps=1, inner_lr=0.1)
        loop_loss = loop_loss + loss_fn(one, (query[0][t], query[1][t]))
    for got, want in zip(batched, hvp(loop_loss), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Meta-gradients: finite differences, first order, learned learning rates, ANIL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("batched", [False, True])
def test_second_order_meta_gradient_matches_finite_differences(steps: int, batched: bool) -> None:
    model = _mlp(hidden=(3,), activation="tanh")
    params = _leaf_params(model)
    names = list(params)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0, tasks=2)
    lr = torch.tensor(0.05, dtype=DTYPE, requires_grad=True)

    def outer_loss(*tensors: Tensor) -> Tensor:
        theta = dict(zip(names, tensors[:-1], strict=True))
        if batched:
            adapted = batched_adapt(theta, loss_fn, support, steps=steps, inner_lr=tensors[-1])
            return vmap(loss_fn)(adapted, query).sum()
        total = torch.zeros((), dtype=DTYPE)
        for t in range(2):
            task_support = (support[0][t], support[1][t])
            adapted = adapt(theta, loss_fn, task_support, steps=steps, inner_lr=tensors[-1])
            total = total + loss_fn(adapted, (query[0][t], query[1][t]))
        return total

    assert torch.autograd.gradcheck(outer_loss, (*params.values(), lr), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("batched", [False, True])
def test_first_order_meta_gradient_is_query_gradient_at_adapted_params(batched: bool) -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)

    def meta_grad(first_order: bool) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
        if batched:
            adapted = batched_adapt(
                params, loss_fn, support, steps=2, inner_lr=0.01, first_order=first_order
            )
            outer = vmap(loss_fn)(adapted, query).sum()
        else:
            data = (support[0][0], support[1][0])
            adapted = adapt(params, loss_fn, data, steps=2, inner_lr=0.01, first_order=first_order)
            outer = loss_fn(adapted, (query[0][0], query[1][0]))
        return torch.autograd.grad(outer, list(params.values())), adapted

    first, adapted = meta_grad(True)
    second, _ = meta_grad(False)
    # FOMAML (Finn et al. 2017, Sec. 5.2): the gradient of the query loss at theta'.
    tasks = TASKS if batched else 1
    by_hand = [torch.zeros_like(p) for p in params.values()]
    for t in range(tasks):
        theta_t = {
            k: (v[t] if batched else v).detach().requires_grad_() for k, v in adapted.items()
        }
        grads = torch.autograd.grad(
            loss_fn(theta_t, (query[0][t], query[1][t])), list(theta_t.values())
        )
        by_hand = [a + g for a, g in zip(by_hand, grads, strict=True)]
    for got, want in zip(first, by_hand, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert max((a - b).abs().max() for a, b in zip(first, second, strict=True)) > 1e-6


def test_meta_sgd_learning_rates_get_hand_computed_gradients() -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    data, query_data = (support[0][0], support[1][0]), (query[0][0], query[1][0])
    alpha = _meta_sgd_lr(params)
    adapted = adapt(params, loss_fn, data, steps=1, inner_lr=alpha)
    lr_grads = torch.autograd.grad(loss_fn(adapted, query_data), list(alpha.values()))
    # theta' = theta - alpha * g, g independent of alpha: dL/dalpha = -g * dL/dtheta'(theta').
    inner = torch.autograd.grad(loss_fn(params, data), list(params.values()))
    theta = {k: v.detach().requires_grad_() for k, v in adapted.items()}
    outer = torch.autograd.grad(loss_fn(theta, query_data), list(theta.values()))
    for got, g, q in zip(lr_grads, inner, outer, strict=True):
        assert got.shape == g.shape and got.abs().sum() > 0
        torch.testing.assert_close(got, -g * q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batched", [False, True])
def test_anil_adapts_only_the_head_and_body_still_gets_meta_gradients(batched: bool) -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    if batched:
        adapted = batched_adapt(params, loss_fn, support, steps=2, inner_lr=0.01, adapt_keys=HEAD)
        outer = vmap(loss_fn)(adapted, query).sum()
        adapted = {k: v[0] for k, v in adapted.items()}
    else:
        data = (support[0][0], support[1][0])
        adapted = adapt(params, loss_fn, data, steps=2, inner_lr=0.01, adapt_keys=HEAD)
        outer = loss_fn(adapted, (query[0][0], query[1][0]))
    for k in params:
        changed = not torch.equal(adapted[k], params[k])
        assert changed == (k in HEAD), k
    grads = torch.autograd.grad(outer, list(params.values()))
    assert all(g.abs().sum() > 0 for k, g in zip(params, grads, strict=True) if "weight" in k)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def _bad_call(**overrides: object) -> None:
    params, data = _linear_setup()
    kwargs: dict[str, object] = dict(steps=1, inner_lr=0.1)
    kwargs.update(overrides)
    adapt(params, _linear_loss, data, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (dict(steps=-1), ValueError, "steps must be >= 0"),
        (dict(steps=1.0), TypeError, "steps must be an int"),
        (dict(inner_lr={"w": torch.tensor(0.1)}), ValueError, r"inner_lr is missing .*'b'"),
        (
            dict(inner_lr={"w": torch.ones(()), "b": torch.ones(()), "c": torch.ones(())}),
            ValueError,
            "inner_lr names unknown",
        ),
        (dict(inner_lr={"w": torch.ones(3), "b": torch.ones(())}), ValueError, r"inner_lr\['w'\]"),
        (dict(inner_lr="0.1"), TypeError, "inner_lr must be"),
        (dict(inner_lr=[0.1, 0.1]), ValueError, "one entry per step"),
        (dict(inner_lr=[0.1, {"w": torch.ones(())}], steps=2), ValueError, r"inner_lr\[1\]"),
        (dict(adapt_keys=["w", "nope"]), ValueError, "adapt_keys names unknown.*nope"),
        (dict(adapt_keys="w"), TypeError, "adapt_keys"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    overrides: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _bad_call(**overrides)


def test_bad_params_data_and_loss_raise() -> None:
    params, _ = _linear_setup()
    x = torch.ones(3, 4)
    with pytest.raises(TypeError, match="params"):
        adapt([1.0], _linear_loss, (x, x), steps=1, inner_lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data tensors must share the leading task axis"):
        batched_adapt(params, _linear_loss, (x, torch.ones(2, 4)), steps=1, inner_lr=0.1)
    with pytest.raises(TypeError, match="data must hold only tensors"):
        batched_adapt(params, _linear_loss, (x, 2.0), steps=1, inner_lr=0.1)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        adapt(params, lambda p, d: p["w"] * d, x, steps=1, inner_lr=0.1)
    with pytest.raises(ValueError, match=r"grads\['w'\] must match shape"):
        inner_step(params, {"w": torch.ones(2)}, 0.1)
