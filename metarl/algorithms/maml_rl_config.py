"""Configuration of the MAML-RL family: YAML in configs/maml_trpo|maml_ppo|promp."""

from __future__ import annotations

import dataclasses
from typing import Literal

from metarl.config import RunConfig
from metarl.config_checks import check_positive, check_unit
from metarl.rl.env_config import VecEnvConfig, preflight_env

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "MAMLRLConfig",
    "OptimConfig",
    "PolicyConfig",
    "preflight",
]

# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvConfig(VecEnvConfig):
    """The task family, the meta-batch and how episodes are collected."""

    id: str = "metarl/Navigation2D-v0"
    """Registered task env id (``metarl envs`` lists them)."""
    meta_batch_size: int = 20
    """Tasks per meta-iteration."""
    episodes_per_task: int = 20
    """Episodes per task and sampling phase (MAML's fast batch size)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "meta_batch_size", "episodes_per_task")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """The policy: a Gaussian MLP for Box actions, a categorical MLP for Discrete ones."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden widths (MAML paper 100, 100; pytorch-maml-rl and ProMP 64, 64)."""
    activation: Literal["relu", "tanh"] = "tanh"
    """Hidden activation (MAML paper ReLU; pytorch-maml-rl and ProMP tanh)."""
    init_std: float = 1.0
    """Initial standard deviation of the Gaussian policy (1.0 in all reference code)."""

    def __post_init__(self) -> None:
        check_positive(self, "init_std")


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """The meta-learner: inner loop, advantages and outer update."""

    name: Literal["maml_trpo", "maml_ppo", "promp"] = "maml_trpo"
    """Outer update: TRPO (MAML), PPO-clip with Adam, or ProMP (PPO-clip + inner-KL penalty)."""
    inner_lr: float = 0.1
    """Inner step size α (MAML 0.1; 2D nav script 0.5; RandParams 0.05)."""
    inner_steps: int = 1
    """Inner policy-gradient steps in meta-training, each on freshly sampled episodes."""
    first_order: bool = False
    """Drop second derivatives through the inner steps (first-order MAML)."""
    learn_inner_lr: bool = False
    """Meta-SGD for RL: learn one inner step size per policy parameter, initialised to inner_lr."""
    inner_estimator: Literal["reinforce", "lvc"] = "reinforce"
    """Inner loss: -mean(log π·A) (MAML), or ProMP's low-variance -mean(π/π_old·A)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE λ (1.0: returns minus the linear baseline, as in MAML and ProMP)."""
    normalize_advantages: bool = True
    """Normalise advantages per task (pytorch-maml-rl, ProMP); MAML only centred them."""
    max_kl: float = 0.01
    """TRPO trust-region radius on the mean KL of the adapted policies."""
    cg_iters: int = 10
    """TRPO conjugate-gradient iterations."""
    cg_damping: float = 1e-5
    """TRPO damping added to the KL Hessian."""
    ls_backtrack: float = 0.8
    """TRPO line-search shrink factor."""
    ls_steps: int = 15
    """TRPO line-search candidates."""
    clip_eps: float = 0.3
    """PPO/ProMP clip range of the outer objective (ProMP 0.3)."""
    inner_kl_coeff: float = 5e-4
    """ProMP's fixed penalty η on KL(π_old ‖ π_θ) of the pre-update policies."""
    ppo_epochs: int = 5
    """PPO/ProMP Adam steps per sampled meta-batch (ProMP 5)."""

    def __post_init__(self) -> None:
        check_positive(self, "inner_lr", "max_kl", "cg_iters", "clip_eps", "ppo_epochs")
        check_positive(self, "ls_steps")
        check_unit(self, "gamma", "gae_lambda")
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        # Negated comparisons, so that NaN fails them too: a negative damping makes the KL
        # Hessian indefinite, and a backtrack factor >= 1 never shrinks the step.
        if not self.cg_damping >= 0:
            raise ValueError(f"cg_damping must be >= 0, got {self.cg_damping}")
        if not 0 < self.ls_backtrack < 1:
            raise ValueError(f"ls_backtrack must be in (0, 1), got {self.ls_backtrack}")
        if not self.inner_kl_coeff >= 0:
            raise ValueError(f"inner_kl_coeff must be >= 0, got {self.inner_kl_coeff}")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """The outer schedule."""

    iterations: int = 500
    """Meta-iterations (MAML scripts: 800 locomotion, 100 nav; pytorch-maml-rl 500)."""
    outer_lr: float = 1e-3
    """Adam step size of maml_ppo and promp (ProMP 1e-3); TRPO ignores it."""

    def __post_init__(self) -> None:
        check_positive(self, "outer_lr")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The MAML test protocol on run.num_eval_tasks held-out tasks, and its baselines."""

    steps: int = 3
    """Adaptation steps K; the curves report returns after 0..K steps."""
    episodes_per_task: int | None = None
    """Episodes per task and step (None: env.episodes_per_task; MAML: 4000 env steps)."""
    inner_lr: float | None = None
    """Step size of the first VPG step (None: algo.inner_lr; MAML 0.1, nav script 0.5)."""
    later_inner_lr: float | None = None
    """Step size of later steps (None: half the first, as MAML's 0.1/0.05 and 0.5/0.25)."""
    baselines: bool = True
    """Also evaluate the pretrained, random-init and oracle baselines."""
    pretrain_iterations: int = 100
    """Multi-task pre-training budget: iterations of this driver with no inner step."""
    pretrained_inner_lr: float | None = None
    """Fine-tuning step size of the pretrained policy (None: the MAML schedule)."""
    random_inner_lr: float | None = None
    """Fine-tuning step size of the random initialisation (None: the MAML schedule)."""
    oracle: bool = True
    """With ``baselines``, also train and evaluate the per-task oracle (off: no SB3 training)."""
    oracle_timesteps: int = 200_000
    """Env steps of the stable-baselines3 PPO oracle (0: untrained, for smoke tests)."""
    oracle_num_envs: int = 8
    """Parallel envs of the oracle's PPO."""

    def __post_init__(self) -> None:
        check_positive(self, "episodes_per_task", "inner_lr", "later_inner_lr")
        check_positive(self, "pretrained_inner_lr", "random_inner_lr", "oracle_num_envs")
        if min(self.steps, self.pretrain_iterations, self.oracle_timesteps) < 0:
            raise ValueError("steps, pretrain_iterations and oracle_timesteps must be >= 0")


@dataclasses.dataclass(frozen=True)
class MAMLRLConfig:
    """A MAML-RL experiment: one YAML file in configs/maml_trpo|maml_ppo|promp maps onto it."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    """The task family and sampling."""
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """The policy network."""
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    """The meta-learner."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The outer schedule."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """Evaluation and baselines."""
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Seed, device, run directory, logging and checkpoints."""


CONFIG_CLASS = MAMLRLConfig


def preflight(cfg: MAMLRLConfig, device: object = None) -> None:
    """Refuse a MAML-RL config the env registry or the machine cannot run, before any work.

    Resolves and builds the env (one sub-env), and checks the worker count against the CPUs and
    against the training and evaluation vector envs (see `metarl.rl.env_config.preflight_env`).

    Args:
        cfg: The loaded config.
        device: The run's device (unused: the env checks do not depend on it).

    Raises:
        ValueError: Naming the offending field.
    """
    env = cfg.env
    eval_tasks = min(cfg.run.num_eval_tasks, env.meta_batch_size)
    eval_episodes = cfg.eval.episodes_per_task or env.episodes_per_task
    preflight_env(
        env,
        {
            "training": env.meta_batch_size * env.episodes_per_task,
            "evaluation": eval_tasks * eval_episodes,
        },
    )
