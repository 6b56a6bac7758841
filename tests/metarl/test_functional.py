"""Tests for the one inner loop: known answers, plain-autograd loop twins, finite differences, and
the Adam update against torch.optim.Adam."""

from collections.abc import Callable

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, vmap

from metarl.functional import AdaptResult, adam, adapt, adapt_and_evaluate, sgd
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


def _task(data: tuple[Tensor, Tensor], t: int) -> tuple[Tensor, Tensor]:
    return data[0][t], data[1][t]


def _loop_adapt(
    params: dict[str, Tensor],
    loss_fn: Callable[..., Tensor],
    data: object,
    lrs: list[object],
    first_order: bool = False,
    keys: tuple[str, ...] | None = None,
) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
    """The trusted twin: one task's inner SGD loop as plain ``torch.autograd.grad`` calls."""
    keys = tuple(params) if keys is None else keys
    path, losses = [dict(params)], []
    for lr in lrs:
        p = path[-1]
        loss = loss_fn(p, data)
        grads = torch.autograd.grad(loss, [p[k] for k in keys], create_graph=not first_order)
        new = dict(p)
        for k, g in zip(keys, grads, strict=True):
            new[k] = p[k] - (lr[k] if isinstance(lr, dict) else lr) * g
        path.append(new)
        losses.append(loss)
    return path, losses


# --------------------------------------------------------------------------------------------
# Known answers
# --------------------------------------------------------------------------------------------


def _linear_loss(params: dict[str, Tensor], data: tuple[Tensor, Tensor]) -> Tensor:
    x, y = data
    return (params["w"] * x + params["b"] - y).square().mean()


def _linear_setup() -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
    """One task: ``data`` is ``[task=1, shot=2]``."""
    params = {
        "w": torch.tensor(2.0, dtype=DTYPE, requires_grad=True),
        "b": torch.tensor(0.5, dtype=DTYPE, requires_grad=True),
    }
    data = (torch.tensor([[1.0, 2.0]], dtype=DTYPE), torch.tensor([[1.0, 3.0]], dtype=DTYPE))
    return params, data


def test_one_step_on_linear_model_equals_hand_computed_update() -> None:
    params, data = _linear_setup()
    # residuals r = 2x + 0.5 - y = [1.5, 1.5]; dL/dw = mean(2 r x) = 4.5; dL/db = mean(2 r) = 3.
    result = adapt(params, _linear_loss, data, steps=1, lr=0.1)
    torch.testing.assert_close(result.params["w"], torch.tensor([2.0 - 0.1 * 4.5], dtype=DTYPE))
    torch.testing.assert_close(result.params["b"], torch.tensor([0.5 - 0.1 * 3.0], dtype=DTYPE))
    torch.testing.assert_close(result.losses, torch.tensor([[2.25]], dtype=DTYPE))
    stepped, state = sgd().update(params, {"w": torch.tensor(4.5, dtype=DTYPE)}, None, 0.1)
    torch.testing.assert_close(stepped["w"], result.params["w"][0])
    assert stepped["b"] is params["b"] and state is None


def test_per_step_learning_rates_are_used_in_order() -> None:
    params, data = _linear_setup()
    lrs = [{"w": torch.tensor(0.1, dtype=DTYPE), "b": torch.tensor(0.0, dtype=DTYPE)}, 0.2]
    result = adapt(params, _linear_loss, data, steps=2, lr=lrs)
    by_hand, _ = _loop_adapt(params, _linear_loss, _task(data, 0), lrs)
    torch.testing.assert_close({k: v[0] for k, v in result.params.items()}, by_hand[-1])
    torch.testing.assert_close(result.trajectory[1]["b"][0], params["b"])  # lr 0 for b in step 0


def test_trajectory_and_losses_line_up() -> None:
    model = _mlp()
    params, (support, _) = _leaf_params(model), _sinusoid_tasks(0)
    steps = 3
    result = adapt(params, _mse(model), support, steps=steps, lr=0.01)
    assert isinstance(result, AdaptResult)
    assert len(result.trajectory) == steps + 1 and result.losses.shape == (TASKS, steps)
    for k in params:
        torch.testing.assert_close(
            result.trajectory[0][k], params[k].expand(TASKS, *params[k].shape)
        )
    torch.testing.assert_close(result.trajectory[-1], result.params)
    expected = torch.stack([vmap(_mse(model))(p, support) for p in result.trajectory[:-1]], dim=1)
    torch.testing.assert_close(result.losses, expected)
    assert (result.losses[:, -1] < result.losses[:, 0]).all()  # the inner loop learns


def test_zero_steps_returns_params_unchanged() -> None:
    params, data = _linear_setup()
    x = torch.ones(2, 3, dtype=DTYPE)
    result = adapt(params, _linear_loss, (x, x), steps=0, lr=0.1)
    assert result.params["w"].shape == (2,) and result.losses.shape == (2, 0)
    torch.testing.assert_close(result.params["w"], params["w"].expand(2))


def test_step_index_is_passed_to_loss_fn() -> None:
    params, _ = _linear_setup()
    seen: list[int] = []

    def loss_fn(p: dict[str, Tensor], d: tuple[Tensor, Tensor], step: int) -> Tensor:
        seen.append(step)
        return _linear_loss(p, d)

    x = torch.ones(2, 2, dtype=DTYPE)
    adapt(params, loss_fn, (x, x), steps=3, lr=0.1, step_arg=True)
    assert seen == [0, 1, 2]


def test_inputs_are_not_mutated_and_eval_works_under_no_grad() -> None:
    model = _mlp()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    before = {k: v.clone() for k, v in params.items()}
    support, _ = _sinusoid_tasks(0)
    with torch.no_grad():
        adapted = adapt(params, _mse(model), support, steps=2, lr=0.01).params
    torch.testing.assert_close(params, before, rtol=0, atol=0)
    assert not any(v.requires_grad for v in params.values())
    assert not any(v.requires_grad for v in adapted.values())
    assert not torch.equal(adapted["head.bias"][0], params["head.bias"])


# --------------------------------------------------------------------------------------------
# Trusted twin: one vmap over tasks equals a Python loop over tasks of plain autograd
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("lr_kind", ["float", "meta_sgd", "lslr"])
@pytest.mark.parametrize("adapt_keys", [None, HEAD])
def test_adapt_equals_autograd_loop_over_tasks(
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
    kwargs = dict(steps=steps, lr=inner_lr, first_order=first_order, adapt_keys=adapt_keys)
    wrt = list(params.values()) + _lr_tensors(inner_lr)

    batched = adapt(params, loss_fn, support, **kwargs)
    batched_grads = torch.autograd.grad(vmap(loss_fn)(batched.params, query).sum(), wrt)

    lrs = inner_lr if isinstance(inner_lr, list) else [inner_lr] * steps
    loop_loss = torch.zeros((), dtype=DTYPE)
    for t in range(TASKS):
        path, losses = _loop_adapt(params, loss_fn, _task(support, t), lrs, first_order, keys)
        for k in params:
            torch.testing.assert_close(batched.params[k][t], path[-1][k], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(batched.losses[t], torch.stack(losses), rtol=1e-12, atol=1e-12)
        loop_loss = loop_loss + loss_fn(path[-1], _task(query, t))
    loop_grads = torch.autograd.grad(loop_loss, wrt)
    for got, want in zip(batched_grads, loop_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_per_task_params_continue_the_adaptation(first_order: bool) -> None:
    # MAML-RL's later inner steps: per-task parameters, a new batch, one step each.
    model = _mlp(activation="tanh")
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    kwargs = dict(first_order=first_order)
    first = adapt(params, loss_fn, support, steps=1, lr=0.05, **kwargs).params
    second = adapt(first, loss_fn, query, steps=1, lr=0.02, per_task=True, **kwargs).params
    both = torch.autograd.grad(
        sum(v.square().sum() for v in second.values()), list(params.values())
    )
    loop_total = torch.zeros((), dtype=DTYPE)
    for t in range(TASKS):
        path, _ = _loop_adapt(params, loss_fn, _task(support, t), [0.05], first_order)
        path, _ = _loop_adapt(path[-1], loss_fn, _task(query, t), [0.02], first_order)
        for k in params:
            torch.testing.assert_close(second[k][t], path[-1][k], rtol=1e-12, atol=1e-12)
        loop_total = loop_total + sum(v.square().sum() for v in path[-1].values())
    looped = torch.autograd.grad(loop_total, list(params.values()))
    torch.testing.assert_close(both, looped, rtol=1e-10, atol=1e-12)


def test_hessian_vector_product_through_adapt_equals_loop() -> None:
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

    adapted = adapt(params, loss_fn, support, steps=1, lr=0.1).params
    batched = hvp(vmap(loss_fn)(adapted, query).sum())
    loop_loss = torch.zeros((), dtype=DTYPE)
    for t in range(TASKS):
        path, _ = _loop_adapt(params, loss_fn, _task(support, t), [0.1])
        loop_loss = loop_loss + loss_fn(path[-1], _task(query, t))
    for got, want in zip(batched, hvp(loop_loss), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Meta-gradients: finite differences, first order, learned learning rates, ANIL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(steps: int) -> None:
    model = _mlp(hidden=(3,), activation="tanh")
    params = _leaf_params(model)
    names = list(params)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0, tasks=2)
    lr = torch.tensor(0.05, dtype=DTYPE, requires_grad=True)

    def outer_loss(*tensors: Tensor) -> Tensor:
        theta = dict(zip(names, tensors[:-1], strict=True))
        adapted = adapt(theta, loss_fn, support, steps=steps, lr=tensors[-1]).params
        return vmap(loss_fn)(adapted, query).sum()

    assert torch.autograd.gradcheck(outer_loss, (*params.values(), lr), eps=1e-6, atol=1e-5)


def test_first_order_meta_gradient_is_query_gradient_at_adapted_params() -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)

    def meta_grad(first_order: bool) -> tuple[tuple[Tensor, ...], dict[str, Tensor]]:
        adapted = adapt(params, loss_fn, support, steps=2, lr=0.01, first_order=first_order)
        outer = vmap(loss_fn)(adapted.params, query).sum()
        return torch.autograd.grad(outer, list(params.values())), adapted.params

    first, adapted = meta_grad(True)
    second, _ = meta_grad(False)
    # FOMAML (Finn et al. 2017, Sec. 5.2): the gradient of the query loss at theta'.
    by_hand = [torch.zeros_like(p) for p in params.values()]
    for t in range(TASKS):
        theta_t = {k: v[t].detach().requires_grad_() for k, v in adapted.items()}
        grads = torch.autograd.grad(loss_fn(theta_t, _task(query, t)), list(theta_t.values()))
        by_hand = [a + g for a, g in zip(by_hand, grads, strict=True)]
    for got, want in zip(first, by_hand, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert max((a - b).abs().max() for a, b in zip(first, second, strict=True)) > 1e-6


def test_meta_sgd_learning_rates_get_hand_computed_gradients() -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0, tasks=1)
    data, query_data = _task(support, 0), _task(query, 0)
    alpha = _meta_sgd_lr(params)
    adapted = adapt(params, loss_fn, support, steps=1, lr=alpha).params
    lr_grads = torch.autograd.grad(vmap(loss_fn)(adapted, query).sum(), list(alpha.values()))
    # theta' = theta - alpha * g, g independent of alpha: dL/dalpha = -g * dL/dtheta'(theta').
    inner = torch.autograd.grad(loss_fn(params, data), list(params.values()))
    theta = {k: v[0].detach().requires_grad_() for k, v in adapted.items()}
    outer = torch.autograd.grad(loss_fn(theta, query_data), list(theta.values()))
    for got, g, q in zip(lr_grads, inner, outer, strict=True):
        assert got.shape == g.shape and got.abs().sum() > 0
        torch.testing.assert_close(got, -g * q, rtol=1e-12, atol=1e-12)


def test_anil_adapts_only_the_head_and_body_still_gets_meta_gradients() -> None:
    model = _mlp()
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(0)
    adapted = adapt(params, loss_fn, support, steps=2, lr=0.01, adapt_keys=HEAD).params
    outer = vmap(loss_fn)(adapted, query).sum()
    for k in params:
        changed = not torch.equal(adapted[k][0], params[k])
        assert changed == (k in HEAD), k
    grads = torch.autograd.grad(outer, list(params.values()))
    assert all(g.abs().sum() > 0 for k, g in zip(params, grads, strict=True) if "weight" in k)


# --------------------------------------------------------------------------------------------
# Adam as an inner update: torch.optim.Adam is the twin
# --------------------------------------------------------------------------------------------


def _random_params(seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=g, dtype=DTYPE),
        "b": torch.randn(4, generator=g, dtype=DTYPE),
    }


@pytest.mark.parametrize("betas", [(0.0, 0.999), (0.0, 0.9), (0.9, 0.99)])
def test_adam_update_matches_torch_adam_step_by_step(betas: tuple[float, float]) -> None:
    params = _random_params(0)
    twin = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adam(twin.values(), lr=0.03, betas=betas, eps=1e-8)
    optimiser = adam(betas, eps=1e-8)
    state = optimiser.init(params)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        grads = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}
        params, state = optimiser.update(params, grads, state, 0.03)
        for k, v in twin.items():
            v.grad = grads[k].clone()
        opt.step()
        for k in params:
            torch.testing.assert_close(params[k], twin[k].detach(), rtol=1e-12, atol=1e-12)
    assert state.step == 6


def test_adam_update_is_pure_and_checks_keys() -> None:
    params = _random_params(0)
    before = {k: v.clone() for k, v in params.items()}
    optimiser = adam()
    state = optimiser.init(params)
    optimiser.update(params, {k: torch.ones_like(v) for k, v in params.items()}, state, 0.1)
    for k in params:
        torch.testing.assert_close(params[k], before[k], rtol=0, atol=0)
        assert not state.exp_avg_sq[k].any()
    with pytest.raises(ValueError, match="grads must have the keys"):
        optimiser.update(params, {"w": torch.ones(3, 4)}, state, 0.1)


def test_adapt_with_adam_equals_torch_adam_in_a_loop_over_tasks() -> None:
    model = _mlp()
    params = _leaf_params(model)
    support, _ = _sinusoid_tasks(0)
    result = adapt(
        params, _mse(model), support, steps=3, lr=0.01, update=adam((0.0, 0.99)), first_order=True
    )
    for t in range(TASKS):
        twin = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
        opt = torch.optim.Adam(twin.values(), lr=0.01, betas=(0.0, 0.99))
        for _ in range(3):
            opt.zero_grad()
            _mse(model)(twin, _task(support, t)).backward()
            opt.step()
        for k in params:
            torch.testing.assert_close(
                result.params[k][t], twin[k].detach(), rtol=1e-12, atol=1e-12
            )


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


def _bad_call(**overrides: object) -> None:
    params, data = _linear_setup()
    kwargs: dict[str, object] = dict(steps=1, lr=0.1)
    kwargs.update(overrides)
    adapt(params, _linear_loss, data, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (dict(steps=-1), ValueError, "steps must be >= 0"),
        (dict(steps=1.0), TypeError, "steps must be an int"),
        (dict(lr={"w": torch.tensor(0.1)}), ValueError, r"lr is missing .*'b'"),
        (
            dict(lr={"w": torch.ones(()), "b": torch.ones(()), "c": torch.ones(())}),
            ValueError,
            "lr names unknown",
        ),
        (dict(lr={"w": torch.ones(3), "b": torch.ones(())}), ValueError, r"lr\['w'\]"),
        (dict(lr="0.1"), TypeError, "lr must be"),
        (dict(lr=[0.1, 0.1]), ValueError, "one entry per step"),
        (dict(lr=[0.1, {"w": torch.ones(())}], steps=2), ValueError, r"lr\[1\]"),
        (dict(adapt_keys=["w", "nope"]), ValueError, "adapt_keys names unknown.*nope"),
        (dict(adapt_keys="w"), TypeError, "adapt_keys"),
        (dict(per_task=True), ValueError, "per_task=True every parameter needs the task axis"),
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
        adapt([1.0], _linear_loss, (x, x), steps=1, lr=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data tensors must share the leading task axis"):
        adapt(params, _linear_loss, (x, torch.ones(2, 4)), steps=1, lr=0.1)
    with pytest.raises(TypeError, match="data must hold only tensors"):
        adapt(params, _linear_loss, (x, 2.0), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        adapt(params, lambda p, d: p["w"] * d, x, steps=1, lr=0.1)


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("lr_kind", ["float", "meta_sgd", "lslr"])
@pytest.mark.parametrize("adapt_keys", [None, HEAD])
def test_adapt_and_evaluate_equals_adapt_then_vmap_of_the_evaluation(
    first_order: bool, lr_kind: str, adapt_keys: tuple[str, ...] | None
) -> None:
    # MAML's outer loss in one vmap: the same floats as adapt + a second vmap over its params
    model, steps = _mlp(), 2
    params = _leaf_params(model)
    loss_fn = _mse(model)
    support, query = _sinusoid_tasks(3)
    keys = adapt_keys or tuple(params)
    inner_lr: object = {
        "float": 0.01,
        "meta_sgd": _meta_sgd_lr({k: params[k] for k in keys}),
        "lslr": _lslr({k: params[k] for k in keys}, steps),
    }[lr_kind]
    kwargs = dict(steps=steps, lr=inner_lr, first_order=first_order, adapt_keys=adapt_keys)
    wrt = list(params.values()) + _lr_tensors(inner_lr)

    def evaluate(p: dict[str, Tensor], data: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        pred = functional_call(model, p, (data[0],))
        return (pred - data[1]).square().mean(), pred

    losses, (query_loss, pred) = adapt_and_evaluate(
        params, loss_fn, support, evaluate, query, **kwargs
    )
    result = adapt(params, loss_fn, support, **kwargs)
    want_loss, want_pred = vmap(evaluate)(result.params, query)
    assert torch.equal(losses, result.losses)
    # ANIL's body is shared by the tasks here, expanded per task by adapt: other kernels
    torch.testing.assert_close(pred, want_pred, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(query_loss, want_loss, rtol=1e-12, atol=1e-14)
    got = torch.autograd.grad(query_loss.sum(), wrt)
    want = torch.autograd.grad(want_loss.sum(), wrt)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


def test_adapt_and_evaluate_with_zero_steps_evaluates_the_initial_params() -> None:
    params, _ = _linear_setup()
    x = torch.ones(3, 4)

    def evaluate(p: dict[str, Tensor], d: Tensor) -> Tensor:
        return _linear_loss(p, (d, d))

    losses, value = adapt_and_evaluate(params, _linear_loss, (x, x), evaluate, x, steps=0, lr=0.1)
    assert losses.shape == (3, 0)
    torch.testing.assert_close(value, vmap(evaluate, in_dims=(None, 0))(params, x))


def test_adapt_and_evaluate_checks_the_task_axis_of_eval_data() -> None:
    params, _ = _linear_setup()
    x = torch.ones(3, 4)
    with pytest.raises(ValueError, match="eval_data has 2 tasks .* data has 3"):
        adapt_and_evaluate(
            params, _linear_loss, (x, x), _linear_loss, (x[:2], x[:2]), steps=1, lr=0.1
        )
    with pytest.raises(TypeError, match="data must hold only tensors"):
        adapt_and_evaluate(params, _linear_loss, (x, x), _linear_loss, (x, 2.0), steps=1, lr=0.1)
