"""A recurrent (GRU) actor-critic for RL², used as a function of a parameter dict.

The policy of Duan et al. (2016, §2.3): a GRU whose input at each step is the observation, the
previous action, the previous reward and the previous "episode ended" flag, so that it can learn a
learning algorithm in its hidden state. The hidden state runs across the episode boundaries of a
trial and is reset only when the task changes.

The hidden state is an explicit input and output, never stored on the module
(``cleanrl/ppo_atari_lstm.py`` keeps it the same way). One call runs a batch of sequences::

    out = recurrent_forward(policy, params, inputs, h0, mask=mask, reset=reset)
    # inputs [B, T, input_size], h0 [B, state_size] -> out.dist [B, T, ...], out.value [B, T],
    # out.h_last [B, state_size]

Two rules give sampling and training the same recurrence:

- **mask**: a step with ``mask = 0`` (padding after an episode terminated early) leaves the
  state unchanged, ``h_t = m_t * GRU(x_t, h_{t-1}) + (1 - m_t) * h_{t-1}``; its outputs are
  computed from the carried state and meant to be ignored.
- **reset**: ``reset_t = 1`` sets the state to zero before step ``t`` (a trial boundary inside a
  row; at ``t = 0`` it zeroes ``h0``).

Two equivalent paths compute this: a Python loop over time with the GRU cell maths written out
(``method="loop"``, needed for resets inside a row), and torch's fused GRU kernel
(``method="fused"``), which runs masked rows by first gathering each row's valid steps to the front
(skipping a step that leaves the state unchanged is the same as not running it). ``"auto"`` picks
the fused kernel unless a row resets after its first step. Tests check the two agree. The sampler
steps the policy with :class:`RecurrentStep` (``torch.gru_cell``, the cell ``nn.GRU`` runs, with
the weights bound once), which gives the same bits as a one-step call of the fused path on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.func import functional_call

from metarl.functional import Params
from metarl.nn import MLP
from metarl.rl.policies import CategoricalMLPPolicy, GaussianMLPPolicy, PolicyOutput

__all__ = [
    "RecurrentOutput",
    "RecurrentPolicy",
    "RecurrentStep",
    "action_head",
    "multiplicative_readout",
    "recurrent_forward",
]

Method = Literal["auto", "loop", "fused"]


class RecurrentOutput(NamedTuple):
    """What a recurrent forward pass returns.

    Attributes:
        dist: The action distribution at every step, ``loc [B, T, out]`` (and ``log_std``).
        value: The value estimate ``V(h_t)`` at every step, ``[B, T]``.
        h_last: The state after the last step (the last valid one, for masked rows),
            ``[B, state_size]``.
    """

    dist: PolicyOutput
    value: Tensor
    h_last: Tensor


def _init_gru_(gru: nn.GRU, generator: torch.Generator | None, update_bias: float = 0.0) -> None:
    """PyTorch's default GRU init, ``U(-1/sqrt(S), 1/sqrt(S))``, drawn from ``generator``.

    ``update_bias`` is then added to the update gate's bias (``bias_hh``'s ``z`` block; torch
    orders the gates ``r, z, n``): ``z = σ(... + b)`` near 1 keeps the state, so a positive ``b``
    makes the fresh GRU remember for about ``1 + e^b`` steps instead of about 2 (the forget-gate
    bias of Jozefowicz et al. 2015, Gers et al. 2000).
    """
    bound = 1.0 / math.sqrt(gru.hidden_size)
    size = gru.hidden_size
    _, _, _, bias_hh = gru.all_weights[0]  # layer 0 (all_weights is the typed accessor)
    with torch.no_grad():
        for weight in gru.parameters():
            weight.uniform_(-bound, bound, generator=generator)
        bias_hh[size : 2 * size].add_(update_bias)


class RecurrentPolicy(nn.Module):
    """GRU actor-critic over ``(obs, previous action, previous reward, previous done)``.

    Parameters are named ``gru.*`` (the trunk), ``pi.*`` (the action head), ``v.*`` (the value
    head), ``log_std`` (Gaussian only) and, with ``separate_value``, ``value_gru.*`` (a second GRU
    for the value function, the "GRU baseline" of RL² §2.4). The state is ``[B, state_size]``:
    the policy GRU's ``hidden_size`` units, then the value GRU's when it has one.

    Args:
        obs_dim: Observation size.
        num_actions: Number of discrete actions (categorical policy), or None.
        act_dim: Action size of a Gaussian policy, or None (give exactly one of the two).
        hidden_size: GRU units (RL² paper 256 [recalled]; garage 64; varibad 128).
        head_hidden: Hidden widths of the MLP heads on the GRU state (empty: linear heads).
        activation: Activation of the head MLPs.
        separate_value: Give the value function its own GRU instead of sharing the policy's.
        init_std: Initial standard deviation of the Gaussian policy.
        update_gate_bias: Added to the initial update-gate bias of the GRU(s): 0 is torch's
            init, whose state halves every step; ``b > 0`` remembers for about ``1 + e^b`` steps
            (tasks whose evidence is many steps old, e.g. tabular MDPs).
        readout: ``"linear"``: the action head reads the GRU state only. ``"multiplicative"``:
            it also adds ``Σ_i o_i U_i h``, a bilinear term in the current observation ``o`` and
            the state ``h`` (a multiplicative interaction, Jayakumar et al. 2020, ICLR,
            "Multiplicative Interactions and Where to Find Them"), so that each observation
            feature reads its own projection of the memory (a one-hot MDP state picks the
            memory's estimates for that state). ``U`` is the parameter ``pi_obs.weight``,
            ``[obs_dim * action_size, hidden_size]``, initialised to zero (the first policy is
            the linear one).
        min_std: Lower bound on the Gaussian policy's standard deviation.
        generator: Initialises every weight.
        device: Where the parameters live.

    Raises:
        ValueError: If not exactly one of ``num_actions``/``act_dim`` is given, or a size is < 1.
    """

    def __init__(
        self,
        obs_dim: int,
        *,
        num_actions: int | None = None,
        act_dim: int | None = None,
        hidden_size: int = 256,
        head_hidden: Sequence[int] = (),
        activation: Literal["relu", "tanh"] = "tanh",
        separate_value: bool = False,
        init_std: float = 1.0,
        update_gate_bias: float = 0.0,
        readout: Literal["linear", "multiplicative"] = "linear",
        min_std: float = 1e-6,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if (num_actions is None) == (act_dim is None):
            raise ValueError(
                f"give exactly one of num_actions and act_dim, got {num_actions}, {act_dim}"
            )
        out_dim = num_actions if num_actions is not None else act_dim
        for name, value in (
            ("obs_dim", obs_dim),
            ("action size", out_dim),
            ("hidden_size", hidden_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if readout not in ("linear", "multiplicative"):
            raise ValueError(f"readout must be 'linear' or 'multiplicative', got {readout!r}")
        if init_std <= 0 or min_std <= 0:
            raise ValueError(f"init_std and min_std must be > 0, got {init_std}, {min_std}")
        assert out_dim is not None
        self.discrete = num_actions is not None
        self.action_size = out_dim
        self.obs_dim = obs_dim
        self.hidden_size = hidden_size
        self.input_size = obs_dim + out_dim + 2
        self.separate_value = separate_value
        self.state_size = hidden_size * (2 if separate_value else 1)
        self._dist = CategoricalMLPPolicy if self.discrete else GaussianMLPPolicy
        kw: dict[str, Any] = {"activation": activation, "generator": generator, "device": device}
        self.gru = nn.GRU(self.input_size, hidden_size, batch_first=True, device=device)
        _init_gru_(self.gru, generator, update_gate_bias)
        self.pi = MLP(hidden_size, head_hidden, out_dim, **kw)
        with (
            torch.no_grad()
        ):  # a near-uniform / zero-mean first policy (cleanrl: gain 0.01, bias 0)
            self.pi.head.weight.mul_(0.01)
            self.pi.head.bias.zero_()
        self.v = MLP(hidden_size, head_hidden, 1, **kw)
        if separate_value:
            self.value_gru = nn.GRU(self.input_size, hidden_size, batch_first=True, device=device)
            _init_gru_(self.value_gru, generator, update_gate_bias)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out_dim,), math.log(init_std), device=device))
        self.min_log_std = math.log(min_std)
        self.readout = readout
        if readout == "multiplicative":  # zeros: draws nothing, so the other weights are as in
            # a linear-readout policy of the same seed
            self.pi_obs = nn.Linear(hidden_size, obs_dim * out_dim, bias=False, device=device)
            nn.init.zeros_(self.pi_obs.weight)

    @classmethod
    def from_spaces(
        cls, observation_space: spaces.Space, action_space: spaces.Space, **kwargs: Any
    ) -> RecurrentPolicy:
        """A policy for an env's spaces: categorical for Discrete, Gaussian for Box actions.

        Args:
            observation_space: A flat ``Box``.
            action_space: ``Discrete``, or a flat ``Box``.
            **kwargs: The other constructor arguments (``hidden_size``, ``generator``, ...).

        Raises:
            ValueError: If a space is of another kind.
        """
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"needs a flat Box observation space, got {observation_space}")
        obs_dim = int(observation_space.shape[0])
        if isinstance(action_space, spaces.Discrete):
            return cls(obs_dim, num_actions=int(action_space.n), **kwargs)
        if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            return cls(obs_dim, act_dim=int(action_space.shape[0]), **kwargs)
        raise ValueError(f"needs a Discrete or flat Box action space, got {action_space}")

    # -- inputs and states -------------------------------------------------------------------

    def action_features(self, action: Tensor) -> Tensor:
        """The action as the GRU sees it: one-hot ``[..., num_actions]`` or ``[..., act_dim]``."""
        if self.discrete:
            return F.one_hot(action.long(), self.action_size).to(torch.get_default_dtype())
        return action

    def encode_inputs(
        self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, prev_done: Tensor
    ) -> Tensor:
        """Concatenates one step's GRU input ``obs ⊕ a_{t-1} ⊕ r_{t-1} ⊕ d_{t-1}``.

        Args:
            obs: ``[..., obs_dim]``.
            prev_action: Previous action's features (:meth:`action_features`),
                ``[..., action_size]``; zeros at the first step of a trial.
            prev_reward: ``[...]``; 0 at the first step of a trial.
            prev_done: ``[...]``, 1 when the previous step ended an episode (so this step starts
                a new episode of the same trial); 0 at the first step of a trial.

        Returns:
            ``[..., input_size]``.

        Raises:
            ValueError: If a shape does not fit ``obs``'s leading axes or the policy's sizes.
        """
        lead = tuple(obs.shape[:-1])
        expected = {
            "obs": (obs, (*lead, self.obs_dim)),
            "prev_action": (prev_action, (*lead, self.action_size)),
            "prev_reward": (prev_reward, lead),
            "prev_done": (prev_done, lead),
        }
        for name, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
        dtype = obs.dtype
        parts = [obs, prev_action.to(dtype), prev_reward[..., None].to(dtype)]
        return torch.cat([*parts, prev_done[..., None].to(dtype)], dim=-1)

    def initial_state(self, batch: int, device: torch.device | None = None) -> Tensor:
        """The state at the start of a trial: zeros ``[batch, state_size]``."""
        dtype = self.gru.all_weights[0][1].dtype  # weight_hh_l0
        return torch.zeros(batch, self.state_size, device=device, dtype=dtype)

    def value_parameter_names(self) -> list[str]:
        """Names of the parameters only the value function uses (``v.*``, ``value_gru.*``)."""
        return [k for k, _ in self.named_parameters() if k.startswith(("v.", "value_gru."))]

    # -- the forward pass --------------------------------------------------------------------

    def forward(
        self,
        inputs: Tensor,
        h0: Tensor,
        mask: Tensor | None = None,
        reset: Tensor | None = None,
        method: Method = "auto",
    ) -> RecurrentOutput:
        """Runs sequences ``inputs [B, T, input_size]`` from ``h0 [B, state_size]``.

        See :func:`recurrent_forward` (which checks shapes and calls this with a parameter dict).
        """
        valid = None if mask is None else mask != 0
        resets = None if reset is None else reset != 0
        if resets is not None:  # a reset at t = 0 is a zero initial state
            h0 = torch.where(resets[:, :1], torch.zeros_like(h0), h0)
        inner = resets is not None and inputs.shape[1] > 1 and bool(resets[:, 1:].any())
        if method == "fused" and inner:
            raise ValueError("method='fused' cannot reset the state after a row's first step")
        run = _gru_loop if method == "loop" or inner else _gru_fused
        size = self.hidden_size
        h_pi, h_last = run(self.gru, inputs, h0[:, :size], valid, resets)
        if self.separate_value:
            h_v, h_last_v = run(self.value_gru, inputs, h0[:, size:], valid, resets)
            h_last = torch.cat([h_last, h_last_v], dim=-1)
        else:
            h_v = h_pi
        readout = self.pi_obs.weight if self.readout == "multiplicative" else None
        loc = action_head(self.pi, None, readout, h_pi, inputs[..., : self.obs_dim])
        log_std = None
        if not self.discrete:
            log_std = torch.clamp(self.log_std, min=self.min_log_std).expand_as(loc)
        return RecurrentOutput(PolicyOutput(loc, log_std), self.v(h_v).squeeze(-1), h_last)

    # -- the action distribution (the MLP policies' closed forms) ---------------------------

    def log_prob(self, out: PolicyOutput, action: Tensor) -> Tensor:
        """Log-probability of ``action`` (``[...]`` int, or ``[..., act_dim]``): ``[...]``."""
        return self._dist.log_prob(out, action)

    def kl(self, old: PolicyOutput, new: PolicyOutput) -> Tensor:
        """KL(old ‖ new) per step, ``[...]``."""
        return self._dist.kl(old, new)

    def entropy(self, out: PolicyOutput) -> Tensor:
        """Entropy per step, ``[...]``."""
        return self._dist.entropy(out)

    def sample(self, out: PolicyOutput, generator: torch.Generator | None = None) -> Tensor:
        """Draws one action per step from ``generator``."""
        return self._dist.sample(out, generator)


def action_head(
    pi: MLP, pi_params: Params | None, readout: Tensor | None, h: Tensor, obs: Tensor
) -> Tensor:
    """The action head of :class:`RecurrentPolicy`: the Gaussian's mean or the logits.

    The one place the head is written: the policy's training forward, the sampler's per-step
    :class:`RecurrentStep` and supervised uses (``scripts/rl2_imitation.py``) all call it.

    Args:
        pi: The linear head (``policy.pi``).
        pi_params: ``pi``'s parameters by name within it (``body.0.weight``, ...), or None for
            the module's own.
        readout: ``pi_obs.weight`` for the ``"multiplicative"`` readout, None for ``"linear"``.
        h: The policy GRU's state ``[..., hidden]``.
        obs: The current observation ``[..., obs_dim]``.

    Returns:
        ``[..., out]``.
    """
    loc = pi(h) if pi_params is None else pi.functional_forward(pi_params, h)
    if readout is not None:
        loc = loc + multiplicative_readout(readout, h, obs)
    return loc


def multiplicative_readout(weight: Tensor, h: Tensor, obs: Tensor) -> Tensor:
    """``Σ_i obs_i U_i h``: the bilinear part of the ``"multiplicative"`` action head.

    Args:
        weight: ``U`` as ``[obs_dim * out, hidden]`` (``pi_obs.weight``).
        h: The GRU state ``[..., hidden]``.
        obs: The current observation ``[..., obs_dim]`` (same leading axes).

    Returns:
        ``[..., out]``.
    """
    # flattened to 2-D first and a product and a sum, not einsum: the same bits for a one-step
    # [B, 1, ...] training call (the GRU's output, laid out time-major) and the sampling step's
    # [B, ...], which neither a 3-D matmul nor einsum gives
    flat = F.linear(h.reshape(-1, h.shape[-1]), weight)
    per_feature = flat.reshape(*h.shape[:-1], obs.shape[-1], -1)  # [..., obs_dim, out]
    return (obs.unsqueeze(-1) * per_feature).sum(-2)


def _gru_loop(
    gru: nn.GRU, x: Tensor, h0: Tensor, valid: Tensor | None, resets: Tensor | None
) -> tuple[Tensor, Tensor]:
    """The GRU cell maths (torch's ``nn.GRU`` equations) one step at a time.

    ``r = σ(W_ir x + b_ir + W_hr h + b_hr)``, ``z = σ(...)``, ``n = tanh(W_in x + b_in +
    r ⊙ (W_hn h + b_hn))``, ``h' = (1 - z) ⊙ n + z ⊙ h``; masked steps keep ``h``, resets zero it.
    Returns the state after every step ``[B, T, S]`` and the last one ``[B, S]``.
    """
    w_ih, w_hh, b_ih, b_hh = gru.all_weights[0]  # layer 0 (all_weights is the typed accessor)
    gates_x = F.linear(x, w_ih, b_ih)  # all steps at once: [B, T, 3S]
    h, outs = h0, []
    for t in range(x.shape[1]):
        if resets is not None and t > 0:
            h = torch.where(resets[:, t, None], torch.zeros_like(h), h)
        x_r, x_z, x_n = gates_x[:, t].chunk(3, dim=-1)
        h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        h_new = (1.0 - z) * torch.tanh(x_n + r * h_n) + z * h
        h = h_new if valid is None else torch.where(valid[:, t, None], h_new, h)
        outs.append(h)
    return torch.stack(outs, dim=1), h


def _gru_fused(
    gru: nn.GRU, x: Tensor, h0: Tensor, valid: Tensor | None, resets: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Torch's fused GRU kernel over the sequence; masked steps are gathered out first."""
    del resets  # only a reset at t = 0 reaches here, already applied to h0
    if valid is None or bool(valid.all()):
        out, h_n = gru(x, h0.unsqueeze(0).contiguous())
        return out, h_n[0]
    # Move each row's valid steps to the front (stable), run them, then read every step's state
    # back: after step t it is the state after the row's cumsum(valid)[t]-th valid step.
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    packed = x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    out, _ = gru(packed, h0.unsqueeze(0).contiguous())
    states = torch.cat([h0.unsqueeze(1), out], dim=1)  # [B, 1 + T, S]: index 0 is h0
    count = valid.long().cumsum(dim=1)
    per_step = states.gather(1, count.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
    return per_step, per_step[:, -1]


def recurrent_forward(
    policy: RecurrentPolicy,
    params: Params,
    inputs: Tensor,
    h0: Tensor,
    *,
    mask: Tensor | None = None,
    reset: Tensor | None = None,
    method: Method = "auto",
) -> RecurrentOutput:
    """Runs ``policy`` with ``params`` over a batch of sequences (see the module docstring).

    Args:
        policy: The recurrent policy (a function of ``params`` only).
        params: ``{name: tensor}`` for all of the policy's parameters (or a subset; the rest are
            the module's own).
        inputs: GRU inputs ``[B, T, input_size]`` (:meth:`RecurrentPolicy.encode_inputs`).
        h0: State before the first step, ``[B, state_size]``.
        mask: ``[B, T]``, 0 on padding steps (state carried unchanged); None: all valid.
        reset: ``[B, T]``, 1 where the state is zeroed before the step (a trial boundary);
            None: no reset.
        method: ``"loop"``, ``"fused"`` or ``"auto"`` (fused unless a row resets after t = 0).

    Returns:
        :class:`RecurrentOutput` with ``dist``/``value`` ``[B, T, ...]`` and ``h_last [B, S]``.

    Raises:
        ValueError: If a shape disagrees (naming the argument) or ``method`` is unknown.
    """
    if not isinstance(inputs, Tensor) or inputs.dim() != 3:
        got = list(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"inputs must have shape [B, T, input_size], got {got}")
    batch, steps, size = inputs.shape
    if size != policy.input_size:
        raise ValueError(f"inputs must have {policy.input_size} features per step, got {size}")
    if not isinstance(h0, Tensor) or tuple(h0.shape) != (batch, policy.state_size):
        got = list(h0.shape) if isinstance(h0, Tensor) else type(h0).__name__
        raise ValueError(
            f"h0 must have shape [B, state_size] = {[batch, policy.state_size]}, got {got}"
        )
    for name, value in (("mask", mask), ("reset", reset)):
        if value is not None and tuple(value.shape) != (batch, steps):
            raise ValueError(
                f"{name} must have shape [B, T] = {[batch, steps]}, got {list(value.shape)}"
            )
    if method not in ("auto", "loop", "fused"):
        raise ValueError(f"method must be 'auto', 'loop' or 'fused', got {method!r}")
    kwargs = {"mask": mask, "reset": reset, "method": method}
    # No tied weights in this module: skipping the tie analysis saves ~0.1 ms per call (sampling).
    return functional_call(policy, params, (inputs, h0), kwargs, tie_weights=False)


class RecurrentStep:
    """One step of ``policy`` with ``params`` bound once, for sampling (no autograd, no checks).

    Computes what :func:`recurrent_forward` computes for one step without a mask or reset,
    bit for bit on CPU (``torch.gru_cell`` is the cell ``nn.GRU`` runs), without its per-call
    cost (shape checks, swapping parameters into the module): the sampler calls it once per env
    step. The value head runs afterwards on all stored states at once (:meth:`value`).

    Args:
        policy: The recurrent policy.
        params: Its parameters (or a subset; the rest are the module's own), used detached.
    """

    def __init__(self, policy: RecurrentPolicy, params: Params) -> None:
        bound = {k: v.detach() for k, v in policy.named_parameters()}
        bound.update({k: v.detach() for k, v in params.items()})
        names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
        trunks = ["gru", "value_gru"] if policy.separate_value else ["gru"]
        self.grus = [tuple(bound[f"{trunk}.{n}"] for n in names) for trunk in trunks]
        self.pi, self.v = policy.pi, policy.v  # their ops on the bound weights, below
        self.pi_params = {k[3:]: v for k, v in bound.items() if k.startswith("pi.")}
        self.v_params = {k[2:]: v for k, v in bound.items() if k.startswith("v.")}
        self.size = policy.hidden_size
        self.obs_dim = policy.obs_dim
        self.readout = bound.get("pi_obs.weight")  # None for a linear readout
        self.log_std = None
        if not policy.discrete:
            self.log_std = torch.clamp(bound["log_std"], min=policy.min_log_std)

    def __call__(self, x: Tensor, h: Tensor) -> tuple[Tensor, PolicyOutput]:
        """``x [B, input_size]``, ``h [B, state_size]`` -> the new state, the distribution."""
        size = self.size
        h_pi = torch.gru_cell(x, h[:, :size], *self.grus[0])
        h_new = h_pi
        if len(self.grus) > 1:
            h_new = torch.cat([h_pi, torch.gru_cell(x, h[:, size:], *self.grus[1])], dim=-1)
        loc = action_head(self.pi, self.pi_params, self.readout, h_pi, x[:, : self.obs_dim])
        log_std = None if self.log_std is None else self.log_std.expand_as(loc)
        return h_new, PolicyOutput(loc, log_std)

    def value(self, states: Tensor) -> Tensor:
        """``V`` of states ``[..., state_size]`` (of the value GRU's part if any): ``[...]``."""
        part = states[..., self.size :] if len(self.grus) > 1 else states
        return self.v.functional_forward(self.v_params, part).squeeze(-1)
