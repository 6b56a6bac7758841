"""Configuration of RL² (rl2_ppo, rl2_trpo): YAML in configs/rl2/."""

from __future__ import annotations

import dataclasses
from typing import Literal

from metarl.config import RunConfig
from metarl.config_checks import check_positive, check_unit
from metarl.config_sections import TRPO_KEYS, apply_sections
from metarl.config_sections import OptimConfig as BaseOptimConfig
from metarl.config_sections import PPOConfig as BasePPOConfig
from metarl.config_sections import TRPOConfig as BaseTRPOConfig
from metarl.rl.env_config import VecEnvConfig, preflight_env

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "OptimConfig",
    "PPOConfig",
    "PolicyConfig",
    "RL2Config",
    "TRPOConfig",
    "preflight",
]


@dataclasses.dataclass(frozen=True)
class EnvConfig(VecEnvConfig):
    """The task family and the trials: one trial of n episodes per task, many in parallel."""

    id: str = "metarl/Bandit-K5-v0"
    """Registered task env id (``metarl envs`` lists them)."""
    episodes_per_trial: int = 10
    """Episodes n of one trial on one task (RL²'s n: pulls of a bandit, episodes of an MDP)."""
    num_trials: int = 20
    """Trials (tasks) per iteration, run in parallel as sub-envs of one vector env."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "episodes_per_trial", "num_trials")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """The recurrent policy: a GRU on (obs, previous action, previous reward, previous done)."""

    hidden_size: int = 256
    """GRU units (RL² paper 256 [recalled]; garage 64; varibad 128)."""
    head_hidden: tuple[int, ...] = ()
    """Hidden widths of the action and value heads on the GRU state (varibad: 128)."""
    activation: Literal["relu", "tanh"] = "tanh"
    """Activation of the head MLPs."""
    value_trunk: Literal["shared", "separate"] = "shared"
    """Value function on the policy's GRU, or on its own GRU (RL² §2.4: a GRU baseline)."""
    init_std: float = 1.0
    """Initial standard deviation of a Gaussian policy (continuous actions)."""
    update_gate_bias: float = 0.0
    """Added to the GRUs' initial update-gate bias: 0 is torch's init, whose state roughly halves
    every step; ``b > 0`` keeps it about ``1 + e^b`` steps (tabular MDPs need evidence ~10 steps
    old; bandits do well on the last pull)."""
    readout: Literal["linear", "multiplicative"] = "linear"
    """Action head: linear in the GRU state, or ``"multiplicative"``, which adds a bilinear term
    in the current observation and the state (Jayakumar et al. 2020), so a one-hot MDP state
    selects its own read-out of the memory."""

    def __post_init__(self) -> None:
        check_positive(self, "hidden_size", "init_std")
        if any(width < 1 for width in self.head_hidden):
            raise ValueError(f"head_hidden widths must be >= 1, got {list(self.head_hidden)}")


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """The policy optimiser over whole trials (its ppo or trpo section holds the update)."""

    name: Literal["rl2_ppo", "rl2_trpo"] = "rl2_ppo"
    """Policy update: PPO-clip epochs (garage, varibad, ProMP's RL²), or TRPO (RL² paper)."""
    gamma: float = 0.99
    """Discount factor over the whole trial."""
    gae_lambda: float = 0.95
    """GAE λ; advantages bootstrap across episodes inside a trial, never across trials."""
    normalize_advantages: bool = True
    """Centre and scale advantages (per PPO minibatch; over the batch for TRPO)."""
    normalize_rewards: bool = False
    """Divide the rewards the advantages and value targets are computed from by a running
    standard deviation of the trial's discounted return (SB3/baselines ``VecNormalize``, varibad's
    ``norm_rew_for_policy``); the GRU still sees the raw reward. Keeps the value loss near 1,
    so in a shared trunk it does not drown the policy loss under the gradient-norm clip."""
    bptt_len: int | None = None
    """Truncated BPTT: steps per chunk, from the stored state at its start (None: whole trial)."""
    num_minibatches: int = 4
    """Minibatches per Adam pass (PPO's epochs, TRPO's value fit), split over trials (never
    over time steps)."""
    max_grad_norm: float | None = 0.5
    """Clip of the global gradient norm of each Adam step (None: no clipping)."""

    def __post_init__(self) -> None:
        check_unit(self, "gamma", "gae_lambda")
        check_positive(self, "bptt_len", "num_minibatches", "max_grad_norm")


@dataclasses.dataclass(frozen=True)
class PPOConfig(BasePPOConfig):
    """The PPO-clip update of rl2_ppo (Adam at optim.lr on the whole loss)."""

    value_coef: float = 0.5
    """Weight of the value loss in PPO's loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus in PPO's loss."""
    clip_value_separately: bool = False
    """Clip the value parameters' gradient (``v.*``, ``value_gru.*``) and the policy's each
    to ``algo.max_grad_norm``, instead of one global norm. With a separate value trunk and returns
    of size ~60 (γ = 0.99 over a 100-step trial) the value gradient is ~10⁴ times the policy's,
    and the global clip shrinks the policy's step to nothing (Adam's second moment remembers the
    earlier, larger gradients)."""

    entropy_coef_final: float | None = None
    """Where set, the entropy weight moves linearly from ``entropy_coef`` at iteration
    ``entropy_decay_start`` to this value at ``entropy_decay_end`` and stays there: a bonus that
    keeps the policy exploring while it learns its strategy, then lets it sharpen (None: constant).
    A run resumed from a checkpoint before ``entropy_decay_start`` of a constant-weight run is the
    scheduled run exactly."""
    entropy_decay_start: int = 0
    """First iteration of the entropy weight's decay."""
    entropy_decay_end: int | None = None
    """Iteration at which the entropy weight reaches ``entropy_coef_final``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.value_coef < 0 or self.entropy_coef < 0:
            raise ValueError("value_coef and entropy_coef must be >= 0")
        if self.entropy_coef_final is None:
            return
        if self.entropy_coef_final < 0:
            raise ValueError(f"entropy_coef_final must be >= 0, got {self.entropy_coef_final}")
        end, start = self.entropy_decay_end, self.entropy_decay_start
        if end is None or start < 0 or end <= start:
            raise ValueError(
                "entropy_coef_final needs 0 <= entropy_decay_start < entropy_decay_end, got "
                f"start {start} and end {end}"
            )

    def entropy_coef_at(self, iteration: int) -> float:
        """The entropy weight of ``iteration`` (0-based)."""
        if self.entropy_coef_final is None or iteration <= self.entropy_decay_start:
            return self.entropy_coef
        assert self.entropy_decay_end is not None
        span = self.entropy_decay_end - self.entropy_decay_start
        frac = min(1.0, (iteration - self.entropy_decay_start) / span)
        return self.entropy_coef + frac * (self.entropy_coef_final - self.entropy_coef)


@dataclasses.dataclass(frozen=True)
class TRPOConfig(BaseTRPOConfig):
    """The TRPO policy step of rl2_trpo, and the Adam fit of its value function."""

    value_epochs: int = 5
    """Adam passes of the value fit over each batch (algo.num_minibatches per pass)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "value_epochs")


@dataclasses.dataclass(frozen=True)
class OptimConfig(BaseOptimConfig):
    """The training schedule."""

    lr: float = 1e-3
    """Adam step size (PPO: the whole loss; TRPO: the value fit)."""
    iterations: int = 500
    """Iterations, each: sample one trial per task, then one policy update."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Held-out trials: the return of each episode of the trial, and classic baselines."""

    episodes_per_trial: int | None = None
    """Episodes per evaluation trial (None: env.episodes_per_trial)."""
    num_trials: int | None = None
    """Trials run in parallel during evaluation (None: env.num_trials)."""
    baselines: bool = True
    """Bandits and tabular MDPs: also run the classic baselines (UCB1, Thompson, Gittins, PSRL,
    ...) on the same tasks."""

    def __post_init__(self) -> None:
        check_positive(self, "episodes_per_trial", "num_trials")


@dataclasses.dataclass(frozen=True)
class RL2Config:
    """An RL² experiment: one YAML file in configs/rl2 maps onto it."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    """The task family and the trials."""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """The recurrent policy."""
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    """The policy optimiser."""
    ppo: PPOConfig | None = None
    """The PPO-clip update (rl2_ppo only; defaults when left out)."""
    trpo: TRPOConfig | None = None
    """The TRPO update (rl2_trpo only; defaults when left out)."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The training schedule."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """Evaluation and baselines."""
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Seed, device, run directory, logging and checkpoints."""

    SECTION_USERS = {"ppo": frozenset({"rl2_ppo"}), "trpo": frozenset({"rl2_trpo"})}
    RENAMED_KEYS = {
        "algo.clip_eps": "ppo.clip_eps",
        "algo.ppo_epochs": "ppo.epochs",
        **{f"algo.{k}": f"ppo.{k}" for k in ("value_coef", "entropy_coef")},
        "algo.clip_value_separately": "ppo.clip_value_separately",
        **{f"algo.{k}": f"trpo.{k}" for k in (*TRPO_KEYS, "value_epochs")},
    }

    def __post_init__(self) -> None:
        apply_sections(self, self.SECTION_USERS)
        if self.algo.num_minibatches > self.env.num_trials:
            raise ValueError(
                f"algo.num_minibatches={self.algo.num_minibatches} exceeds env.num_trials="
                f"{self.env.num_trials}: minibatches split the trials, so each needs one"
            )


CONFIG_CLASS = RL2Config
"""The config class ``metarl train`` loads for ``algo.name`` rl2_ppo and rl2_trpo."""


def preflight(cfg: RL2Config, device: object = None) -> None:
    """Refuse an RL² config the env registry or the machine cannot run, before any work.

    Resolves and builds the env (one sub-env), checks that trials have a horizon, and checks the
    worker count against the CPUs and the training and evaluation vector envs (see
    `metarl.rl.env_config.preflight_env`).

    Args:
        cfg: The loaded config.
        device: The run's device (unused: the env checks do not depend on it).

    Raises:
        ValueError: Naming the offending field.
    """
    import envs

    env = cfg.env
    eval_trials = min(cfg.run.num_eval_tasks, cfg.eval.num_trials or env.num_trials)
    preflight_env(env, {"training": env.num_trials, "evaluation": eval_trials})
    if env.horizon is None and envs.env_info(env.id).max_episode_steps is None:
        raise ValueError(f"env.horizon must be set: {env.id} registers no episode length")
