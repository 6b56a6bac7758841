"""The GRU actor-critic of RL²: both forward paths, masks, resets, gradients and bad inputs."""

import pytest
import torch

from metarl.rl.recurrent import RecurrentPolicy, RecurrentStep, recurrent_forward

F64 = torch.float64


def _policy(discrete=True, separate=False, hidden=5, head=(), obs_dim=3, readout="linear"):
    sizes = {"num_actions": 4} if discrete else {"act_dim": 2}
    policy = RecurrentPolicy(
        obs_dim,
        **sizes,
        hidden_size=hidden,
        head_hidden=head,
        separate_value=separate,
        init_std=0.7,
        readout=readout,
        generator=torch.Generator().manual_seed(0),
    )
    return policy.double()


def _params(policy):
    return {k: v.detach().clone() for k, v in policy.named_parameters()}


def _data(policy, batch=3, steps=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, steps, policy.input_size, generator=g, dtype=F64)
    h0 = torch.randn(batch, policy.state_size, generator=g, dtype=F64)
    return inputs, h0


def _outputs(out):
    return [out.dist.loc, out.value, out.h_last] + (
        [] if out.dist.log_std is None else [out.dist.log_std]
    )


@pytest.mark.parametrize(
    ("discrete", "separate", "head", "readout"),
    [
        (True, False, (), "linear"),
        (False, True, (6,), "linear"),
        (False, False, (), "linear"),
        (True, True, (), "multiplicative"),
        (False, False, (6,), "multiplicative"),
    ],
)
def test_the_sampling_step_is_the_fused_forward_one_step_at_a_time(
    discrete, separate, head, readout
):
    policy = _policy(discrete=discrete, separate=separate, head=head, readout=readout).float()
    params = {k: v.float() for k, v in _params(policy).items()}
    if readout == "multiplicative":  # nonzero, so that the bilinear term is checked too
        g = torch.Generator().manual_seed(3)
        params["pi_obs.weight"] = torch.randn(params["pi_obs.weight"].shape, generator=g)
    inputs, h = (x.float() for x in _data(policy, batch=4, steps=5))
    step = RecurrentStep(policy, params)
    for t in range(inputs.shape[1]):
        want = recurrent_forward(policy, params, inputs[:, t : t + 1], h, method="fused")
        h, dist = step(inputs[:, t], h)
        assert torch.equal(h, want.h_last)  # the same bits: sampling and training agree exactly
        assert torch.equal(dist.loc, want.dist.loc[:, 0])
        assert torch.equal(step.value(h), want.value[:, 0])
        if not discrete:
            assert torch.equal(dist.log_std, want.dist.log_std[:, 0])


@pytest.mark.parametrize("separate", [False, True])
def test_both_paths_equal_torch_gru(separate):
    policy = _policy(separate=separate)
    params = _params(policy)
    inputs, h0 = _data(policy)
    loop = recurrent_forward(policy, params, inputs, h0, method="loop")
    fused = recurrent_forward(policy, params, inputs, h0, method="fused")
    for a, b in zip(_outputs(loop), _outputs(fused), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # the policy GRU's state is torch's nn.GRU run from the first half of h0
    hidden, _ = policy.gru(inputs, h0[None, :, :5].contiguous())
    torch.testing.assert_close(loop.h_last[:, :5], hidden[:, -1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loop.dist.loc, policy.pi(hidden), rtol=1e-10, atol=1e-12)


def test_multiplicative_readout_known_answer_gradient_and_init():
    linear = _policy(separate=True)
    policy = _policy(separate=True, readout="multiplicative")
    # zero-initialised and drawn after everything else: the same weights and outputs as the
    # linear readout of the same seed
    params = _params(policy)
    assert torch.equal(params.pop("pi_obs.weight"), torch.zeros(3 * 4, 5, dtype=F64))
    for name, value in _params(linear).items():
        assert torch.equal(params[name], value), name
    inputs, h0 = _data(policy)
    zero = recurrent_forward(policy, _params(policy), inputs, h0)
    torch.testing.assert_close(
        zero.dist.loc, recurrent_forward(linear, params, inputs, h0).dist.loc
    )
    # logits = pi(h) + sum_i o_i U_i h, with U_i the i-th [4, 5] block of pi_obs.weight's rows
    params = _params(policy)
    params["pi_obs.weight"] = torch.randn(
        12, 5, generator=torch.Generator().manual_seed(1), dtype=F64
    )
    out = recurrent_forward(policy, params, inputs, h0, method="loop")
    hidden, _ = policy.gru(inputs, h0[None, :, :5].contiguous())
    blocks = params["pi_obs.weight"].reshape(3, 4, 5)
    want = policy.pi(hidden)
    for b in range(3):
        for t in range(7):
            for i in range(3):
                want[b, t] += inputs[b, t, i] * (blocks[i] @ hidden[b, t])
    torch.testing.assert_close(out.dist.loc, want, rtol=1e-10, atol=1e-12)
    fused = recurrent_forward(policy, params, inputs, h0, method="fused")
    torch.testing.assert_close(fused.dist.loc, want, rtol=1e-10, atol=1e-12)
    # the bilinear weight gets the gradient autograd gives the hand-written sum; the value not
    weight = params["pi_obs.weight"].requires_grad_()
    recurrent_forward(policy, params, inputs, h0).dist.loc.square().sum().backward()
    ref = weight.detach().clone().requires_grad_()
    hand = policy.pi(hidden.detach()).detach() + torch.einsum(
        "bti,iah,bth->bta", inputs[..., :3], ref.reshape(3, 4, 5), hidden.detach()
    )
    (grad,) = torch.autograd.grad(hand.square().sum(), ref)
    torch.testing.assert_close(weight.grad, grad, rtol=1e-10, atol=1e-12)
    value_only = recurrent_forward(policy, params, inputs, h0).value.sum()
    assert not value_only.requires_grad or torch.autograd.grad(
        value_only, weight, allow_unused=True
    ) == (None,)
    with pytest.raises(ValueError, match="readout must be 'linear' or 'multiplicative'"):
        _policy(readout="bilinear")


def test_masked_steps_carry_the_state_unchanged_in_both_paths():
    policy = _policy()
    params = _params(policy)
    inputs, h0 = _data(policy, batch=4, steps=8)
    mask = torch.ones(4, 8, dtype=F64)
    mask[0, 2:5] = 0  # a gap inside the row (an episode that terminated early)
    mask[1, 6:] = 0  # trailing padding
    mask[2, :] = 0  # nothing valid: the state stays h0
    loop = recurrent_forward(policy, params, inputs, h0, mask=mask, method="loop")
    fused = recurrent_forward(policy, params, inputs, h0, mask=mask, method="fused")
    for a, b in zip(_outputs(loop), _outputs(fused), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loop.h_last[2], h0[2])
    # skipping the masked steps is the same as running the valid ones only
    valid = mask[0] != 0
    ref = recurrent_forward(policy, params, inputs[:1, valid], h0[:1], method="loop")
    torch.testing.assert_close(loop.h_last[:1], ref.h_last)
    # a padding step's output is the carried state's: equal to the step before the gap
    torch.testing.assert_close(loop.value[0, 2:5], loop.value[0, 1].expand(3))
    # masked inputs do not matter
    noisy = inputs.clone()
    noisy[mask == 0] = 1e3
    again = recurrent_forward(policy, params, noisy, h0, mask=mask)
    torch.testing.assert_close(again.h_last, loop.h_last)


def test_reset_zeroes_the_state_before_the_step():
    policy = _policy()
    params = _params(policy)
    inputs, h0 = _data(policy, batch=2, steps=6)
    reset = torch.zeros(2, 6, dtype=F64)
    reset[0, 3] = 1  # a second trial starts at t = 3 in row 0
    reset[1, 0] = 1  # at t = 0: the same as a zero h0
    out = recurrent_forward(policy, params, inputs, h0, reset=reset)
    zeros = torch.zeros(1, policy.state_size, dtype=F64)
    second = recurrent_forward(policy, params, inputs[:1, 3:], zeros)
    torch.testing.assert_close(out.value[0, 3:], second.value[0])
    torch.testing.assert_close(out.h_last[:1], second.h_last)
    first = recurrent_forward(policy, params, inputs[:1, :3], h0[:1])
    torch.testing.assert_close(out.value[0, :3], first.value[0])
    row1 = recurrent_forward(policy, params, inputs[1:], zeros)
    torch.testing.assert_close(out.h_last[1:], row1.h_last)
    with pytest.raises(ValueError, match="fused.*cannot reset"):
        recurrent_forward(policy, params, inputs, h0, reset=reset, method="fused")


@pytest.mark.parametrize("method", ["loop", "fused"])
def test_gradients_match_finite_differences(method):
    policy = _policy(discrete=False, hidden=3, head=(2,))
    params = _params(policy)
    inputs, h0 = _data(policy, batch=2, steps=4)
    mask = torch.ones(2, 4, dtype=F64)
    mask[0, 1] = 0
    actions = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    names = list(params)

    def loss(*tensors):
        out = recurrent_forward(
            policy, dict(zip(names, tensors, strict=True)), inputs, h0, mask=mask, method=method
        )
        logp = policy.log_prob(out.dist, actions)
        return (logp * mask).sum() + (out.value**2 * mask).sum() + out.h_last.sum()

    leaves = tuple(p.clone().requires_grad_() for p in params.values())
    assert torch.autograd.gradcheck(loss, leaves, eps=1e-6, atol=1e-6)


def test_separate_value_trunk_keeps_the_value_off_the_policy_gru():
    policy = _policy(separate=True)
    assert policy.state_size == 10
    assert set(policy.value_parameter_names()) == {
        "value_gru.weight_ih_l0",
        "value_gru.weight_hh_l0",
        "value_gru.bias_ih_l0",
        "value_gru.bias_hh_l0",
        "v.head.weight",
        "v.head.bias",
    }
    params = {k: v.requires_grad_() for k, v in _params(policy).items()}
    inputs, h0 = _data(policy)
    out = recurrent_forward(policy, params, inputs, h0)
    value_grads = torch.autograd.grad(out.value.sum(), list(params.values()), allow_unused=True)
    for name, grad in zip(params, value_grads, strict=True):
        assert (grad is not None) == (name in policy.value_parameter_names()), name
    logit_grads = torch.autograd.grad(out.dist.loc.sum(), list(params.values()), allow_unused=True)
    for name, grad in zip(params, logit_grads, strict=True):
        assert (grad is not None) == name.startswith(("gru.", "pi.")), name
    assert _policy().value_parameter_names() == ["v.head.weight", "v.head.bias"]


def test_update_gate_bias_shifts_only_the_z_gate_and_lengthens_the_memory():
    def build(bias, hidden=64):
        return RecurrentPolicy(
            3,
            num_actions=4,
            hidden_size=hidden,
            separate_value=True,
            update_gate_bias=bias,
            generator=torch.Generator().manual_seed(0),
        ).double()

    plain, biased = build(0.0), build(2.0)
    for gru in ("gru", "value_gru"):
        diff = {
            k: getattr(biased, gru).state_dict()[k] - v
            for k, v in getattr(plain, gru).state_dict().items()
        }
        expected = torch.zeros(3 * 64, dtype=F64)
        expected[64:128] = 2.0  # torch's gate order r, z, n: only the update gate moves
        torch.testing.assert_close(diff.pop("bias_hh_l0"), expected)
        assert all(bool((d == 0).all()) for d in diff.values())

    # The tabular MDP needs evidence ~10 steps old: torch's init all but forgets it (the state
    # roughly halves every step), the biased gate keeps a good share of it.
    def memory(policy, lag=10, steps=20):
        inputs = torch.randn(
            8, steps, policy.input_size, generator=torch.Generator().manual_seed(1)
        )
        inputs = inputs.double().requires_grad_()
        out = recurrent_forward(policy, _params(policy), inputs, policy.initial_state(8).double())
        hidden = out.h_last[:, : policy.hidden_size]
        (grad,) = torch.autograd.grad(hidden.pow(2).sum(), inputs)
        return float(grad[:, steps - 1 - lag].norm() / grad[:, steps - 1].norm())

    assert memory(plain) < 0.01 < 0.1 < memory(biased)


def test_encode_inputs_and_action_features_known_answer():
    policy = _policy()
    obs = torch.tensor([[0.5, -1.0, 2.0]], dtype=F64)
    action = policy.action_features(torch.tensor([2]))
    x = policy.encode_inputs(obs, action, torch.tensor([0.25]), torch.tensor([1.0]))
    expected = [0.5, -1.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.25, 1.0]
    torch.testing.assert_close(x, torch.tensor([expected], dtype=F64))
    gaussian = _policy(discrete=False)
    a = torch.tensor([[0.3, -0.2]])
    assert gaussian.action_features(a) is a
    assert gaussian.input_size == 3 + 2 + 2


def test_sampling_and_distribution_shapes():
    g = torch.Generator().manual_seed(0)
    for discrete, action_shape in ((True, (3, 7)), (False, (3, 7, 2))):
        policy = _policy(discrete=discrete)
        inputs, h0 = _data(policy)
        out = recurrent_forward(policy, _params(policy), inputs, h0)
        action = policy.sample(out.dist, g)
        assert tuple(action.shape) == action_shape
        assert policy.log_prob(out.dist, action).shape == (3, 7)
        assert policy.entropy(out.dist).shape == (3, 7)
        torch.testing.assert_close(policy.kl(out.dist, out.dist), torch.zeros(3, 7, dtype=F64))
    assert _policy().initial_state(4).shape == (4, 5)
    # the first policy is nearly uniform (the action head starts at 0.01 of torch's init)
    policy = _policy()
    inputs, h0 = _data(policy)
    probs = torch.softmax(recurrent_forward(policy, _params(policy), inputs, h0).dist.loc, -1)
    assert (probs - 0.25).abs().max() < 0.01


def test_bad_inputs_raise_errors_naming_the_argument():
    policy = _policy()
    params = _params(policy)
    inputs, h0 = _data(policy)
    with pytest.raises(ValueError, match="inputs must have shape"):
        recurrent_forward(policy, params, inputs[0], h0)
    with pytest.raises(ValueError, match="inputs must have 9 features"):
        recurrent_forward(policy, params, inputs[..., :4], h0)
    with pytest.raises(ValueError, match="h0 must have shape"):
        recurrent_forward(policy, params, inputs, h0[:2])
    with pytest.raises(ValueError, match="mask must have shape"):
        recurrent_forward(policy, params, inputs, h0, mask=torch.ones(3, 6))
    with pytest.raises(ValueError, match="reset must have shape"):
        recurrent_forward(policy, params, inputs, h0, reset=torch.ones(2, 7))
    with pytest.raises(ValueError, match="method must be"):
        recurrent_forward(policy, params, inputs, h0, method="cudnn")
    with pytest.raises(ValueError, match="exactly one of num_actions and act_dim"):
        RecurrentPolicy(3, num_actions=2, act_dim=2)
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        RecurrentPolicy(3, num_actions=2, hidden_size=0)
    with pytest.raises(ValueError, match="prev_reward must have shape"):
        policy.encode_inputs(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(3), torch.zeros(2))
