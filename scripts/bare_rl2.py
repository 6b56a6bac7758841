r"""RL² on HalfCheetahVel as a plain loop with none of metarl's code: the measured limit.

``scripts/bench_rl2.py`` compares metarl's RL² training rate with the rate of its vector env
alone. How close any RL² implementation can come to its env depends on the machine (the GRU
step per env step and the PPO update cost CPU time the env does not), so this module measures
the same work done by hand, in the same run: MuJoCo's own Python bindings stepping 64 copies of
gymnasium's ``half_cheetah.xml`` (frame skip 5, HalfCheetahVel's reward
``-|v_x - v*| - 0.05 Σa²``, gymnasium v5's reset noise), and plain torch for the policy: one
``torch.gru_cell`` per env step on the 64 trials at once, a Gaussian action head and a value head
on the GRU state, then PPO-clip (``epochs`` × ``minibatches`` of whole trials, truncated BPTT over
``bptt``-step chunks from the stored states, ``torch.nn.GRU``, Adam, gradient-norm clipping),
with GAE over each trial. The shapes are RL²'s config's: input = obs, previous action, reward
and done flag. Nothing here is imported from ``metarl`` or ``envs``.

``BareEnv`` stepped with uniform random actions is the plain env rate; ``bare_rl2_round`` the
plain training rate; their ratio is what a plain loop reaches on this machine, the figure the
benchmark sets metarl's ratio beside.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import torch
from torch import Tensor, nn

Round = Callable[[], tuple[int, float]]

FRAME_SKIP, NOISE, CTRL = 5, 0.1, 0.05


class BareEnv:
    """``n`` half-cheetahs with a target velocity each, stepped one after another."""

    def __init__(self, n: int, seed: int) -> None:
        xml = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml"
        self.model = mujoco.MjModel.from_xml_path(str(xml))
        self.datas = [mujoco.MjData(self.model) for _ in range(n)]
        self.rng = np.random.default_rng(seed)
        self.goals = self.rng.uniform(0.0, 2.0, n)
        self.dt = self.model.opt.timestep * FRAME_SKIP
        nq, nv = self.model.nq, self.model.nv
        self.obs = np.zeros((n, nq - 1 + nv), dtype=np.float32)
        self.x = np.zeros(n)

    def _observe(self) -> np.ndarray:
        nq = self.model.nq
        for i, d in enumerate(self.datas):
            self.obs[i, : nq - 1] = d.qpos[1:]
            self.obs[i, nq - 1 :] = d.qvel
            self.x[i] = d.qpos[0]
        return self.obs

    def reset(self) -> np.ndarray:
        """Every cheetah back to the start with reset noise; their observations ``[n, 17]``."""
        m = self.model
        for d in self.datas:
            mujoco.mj_resetData(m, d)
            d.qpos[:] = m.qpos0 + self.rng.uniform(-NOISE, NOISE, m.nq)
            d.qvel[:] = NOISE * self.rng.standard_normal(m.nv)
            mujoco.mj_forward(m, d)
        return self._observe().copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One env step of every cheetah; ``(observations [n, 17], rewards [n])``."""
        before = self.x.copy()
        m = self.model
        for d, a in zip(self.datas, actions, strict=True):
            d.ctrl[:] = a
            mujoco.mj_step(m, d, FRAME_SKIP)
        obs = self._observe()
        reward = -np.abs((self.x - before) / self.dt - self.goals) - CTRL * (actions**2).sum(1)
        return obs.copy(), reward


def random_env_round(n: int, episodes: int, horizon: int, iterations: int) -> Round:
    """The bare env with uniform random actions, one RL² iteration's steps per iteration."""
    env = BareEnv(n, seed=0)
    rng = np.random.default_rng(0)
    pair = [rng.uniform(-1, 1, (n, env.model.nu)) for _ in "ab"]

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(iterations):
            for t in range(episodes * horizon):
                if t % horizon == 0:
                    env.reset()
                env.step(pair[t % 2])
        return iterations * episodes * horizon * n, time.perf_counter() - start

    return run


class BarePolicy(nn.Module):
    """GRU over (obs, previous action, reward, done); linear Gaussian mean and value heads."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(obs_dim + act_dim + 2, hidden, batch_first=True)
        self.mu = nn.Linear(hidden, act_dim)
        self.v = nn.Linear(hidden, 1)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def cell(self, x: Tensor, h: Tensor) -> Tensor:
        """One GRU step of the batch, with the weights of ``self.gru``."""
        g = self.gru
        return torch.gru_cell(x, h, g.weight_ih_l0, g.weight_hh_l0, g.bias_ih_l0, g.bias_hh_l0)


def _log_prob(a: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    z = (a - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def bare_rl2_round(
    n: int,
    episodes: int,
    horizon: int,
    iterations: int,
    *,
    hidden: int,
    gamma: float,
    lam: float,
    epochs: int,
    minibatches: int,
    bptt: int,
    clip: float,
    lr: float,
) -> Round:
    """Plain RL² training (sampling and PPO) for ``iterations`` iterations per call."""
    if n % minibatches or (episodes * horizon) % bptt:
        raise ValueError("trials must split into minibatches and a trial into bptt chunks")
    env = BareEnv(n, seed=0)
    obs_dim, act_dim = env.obs.shape[1], env.model.nu
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    pol = BarePolicy(obs_dim, act_dim, hidden)
    opt = torch.optim.Adam(pol.parameters(), lr=lr)
    steps = episodes * horizon
    width = obs_dim + act_dim + 2

    def iteration() -> None:
        xs = torch.zeros(steps, n, width)
        acts = torch.zeros(steps, n, act_dim)
        logps, values, rewards = (torch.zeros(steps, n) for _ in range(3))
        hs = torch.zeros(steps // bptt, n, hidden)
        h = torch.zeros(n, hidden)
        prev_a, prev_r, prev_d = torch.zeros(n, act_dim), torch.zeros(n), torch.zeros(n)
        with torch.no_grad():
            for t in range(steps):
                if t % horizon == 0:
                    obs = env.reset()
                if t % bptt == 0:
                    hs[t // bptt] = h
                x = torch.cat(
                    [torch.from_numpy(obs), prev_a, prev_r[:, None], prev_d[:, None]], dim=1
                )
                h = pol.cell(x, h)
                mean, value = pol.mu(h), pol.v(h)[:, 0]
                a = mean + torch.exp(pol.log_std) * torch.randn(n, act_dim, generator=gen)
                obs, r = env.step(a.clamp(-1.0, 1.0).numpy().astype(np.float64))
                xs[t], acts[t], values[t] = x, a, value
                logps[t] = _log_prob(a, mean, pol.log_std)
                rewards[t] = prev_r = torch.from_numpy(r).float()
                prev_a = a
                prev_d = torch.full((n,), float((t + 1) % horizon == 0))
        adv = torch.zeros(steps, n)  # GAE over the whole trial; it ends after its last step
        last = torch.zeros(n)
        for t in reversed(range(steps)):
            nxt = values[t + 1] if t + 1 < steps else torch.zeros(n)
            last = rewards[t] + gamma * nxt - values[t] + gamma * lam * last
            adv[t] = last
        ret = adv + values

        def seq(x: Tensor) -> Tensor:  # [T, N, ...] -> [N * chunks, bptt, ...]
            x = x.transpose(0, 1)
            return x.reshape(n * (steps // bptt), bptt, *x.shape[2:])

        data = [seq(x) for x in (xs, acts, logps, adv, ret)]
        h0 = hs.transpose(0, 1).reshape(n * (steps // bptt), hidden)
        per = steps // bptt
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for k in range(minibatches):
                trials = order[k * n // minibatches : (k + 1) * n // minibatches]
                rows = (trials[:, None] * per + torch.arange(per)).reshape(-1)
                x, a, old, ad, rt = (d[rows] for d in data)
                out, _ = pol.gru(x, h0[rows][None])
                mean, value = pol.mu(out), pol.v(out)[..., 0]
                ad = (ad - ad.mean()) / (ad.std() + 1e-8)
                ratio = torch.exp(_log_prob(a, mean, pol.log_std) - old)
                pg = -torch.min(ratio * ad, ratio.clamp(1 - clip, 1 + clip) * ad).mean()
                entropy = (pol.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
                loss = pg + 0.5 * ((value - rt) ** 2).mean() - 0.01 * entropy
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(pol.parameters(), 0.5)
                opt.step()

    iteration()  # warm-up: allocators, caches

    def run() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(iterations):
            iteration()
        return iterations * steps * n, time.perf_counter() - start

    return run
