"""Configuration of the MAML-RL family: YAML in configs/maml_trpo|maml_ppo|promp."""

from __future__ import annotations

import dataclasses
from typing import Literal

from metarl.config import RunConfig
from metarl.config_checks import check_positive, check_unit
from metarl.config_sections import TRPO_KEYS, apply_sections
from metarl.config_sections import InnerConfig as BaseInnerConfig
from metarl.config_sections import OptimConfig as BaseOptimConfig
from metarl.config_sections import PPOConfig as BasePPOConfig
from metarl.config_sections import TRPOConfig as BaseTRPOConfig
from metarl.rl.env_config import VecEnvConfig, preflight_env

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "InnerConfig",
    "MAMLRLConfig",
    "OptimConfig",
    "PPOConfig",
    "PolicyConfig",
    "ProMPConfig",
    "TRPOConfig",
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
    context_size: int = 0
    """CAVIA: context inputs appended to the observation, the only ones the inner loop adapts
    (cavia_trpo only, >= 1 there); 0 for none."""

    def __post_init__(self) -> None:
        check_positive(self, "init_std")
        if self.context_size < 0:
            raise ValueError(f"context_size must be >= 0, got {self.context_size}")


@dataclasses.dataclass(frozen=True)
class InnerConfig(BaseInnerConfig):
    """The inner loop: policy-gradient steps from θ on each task's own episodes."""

    lr: float = 0.1
    """Inner step size α (MAML 0.1; 2D nav script 0.5; RandParams 0.05)."""
    steps: int = 1
    """Inner policy-gradient steps in meta-training, each on freshly sampled episodes."""
    learn_lr: bool = False
    """Meta-SGD for RL: learn one inner step size per policy parameter, initialised to lr."""
    estimator: Literal["reinforce", "lvc"] = "reinforce"
    """Inner loss: -mean(log π·A) (MAML), or ProMP's low-variance -mean(π/π_old·A)."""


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """The meta-learner and its advantages."""

    name: Literal["maml_trpo", "maml_ppo", "promp", "cavia_trpo"] = "maml_trpo"
    """Outer update: TRPO (MAML), PPO-clip with Adam, or ProMP (PPO-clip + inner-KL penalty);
    cavia_trpo is MAML-TRPO whose inner loop adapts only a context input (policy.context_size)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE λ (1.0: returns minus the linear baseline, as in MAML and ProMP)."""
    normalize_advantages: bool = True
    """Normalise advantages per task (pytorch-maml-rl, ProMP); MAML only centred them."""

    def __post_init__(self) -> None:
        check_unit(self, "gamma", "gae_lambda")


@dataclasses.dataclass(frozen=True)
class TRPOConfig(BaseTRPOConfig):
    """The outer TRPO step of maml_trpo and cavia_trpo."""

    fvp: Literal["gauss_newton", "double_backward"] = "double_backward"
    """How conjugate gradient multiplies by the KL's Hessian at the old parameters.
    ``double_backward``: differentiate the KL twice through the inner step (the recorded
    numbers). ``gauss_newton``: ``J^T F J v``, ``J`` the Jacobian of the adapted policies' outputs
    (through the inner step, second order) and ``F`` the output distribution's Fisher matrix, two
    backward passes over graphs saved once per update per iteration; the same matrix (exact where
    the KL and its gradient vanish), cheaper, but in float32 its rounding differs and ten CG
    iterations amplify that: the step agrees with the double backward's in float64, not bit for
    bit in float32."""
    compile: bool = False
    """With ``fvp: gauss_newton``: the saved graphs are ``torch.compile`` graphs, so each
    product's backward passes are compiled with their elementwise work fused (the README's
    outer-update benchmark times it); compiles on the first update of each process (seconds to a
    minute; a C++ compiler is needed on CPU) and rounds differently from the eager product in
    float32."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.compile and self.fvp != "gauss_newton":
            raise ValueError(
                "trpo.compile needs trpo.fvp: gauss_newton (the double-backward product is not "
                f"compiled), got fvp={self.fvp!r}"
            )


@dataclasses.dataclass(frozen=True)
class PPOConfig(BasePPOConfig):
    """The outer PPO-clip update of maml_ppo and promp (Adam at optim.lr)."""

    clip_eps: float = 0.3
    """Clip range ε of the outer objective (ProMP 0.3)."""
    epochs: int = 5
    """Adam steps per sampled meta-batch (ProMP 5)."""


@dataclasses.dataclass(frozen=True)
class ProMPConfig:
    """ProMP's penalty on the pre-update policies."""

    inner_kl_coeff: float = 5e-4
    """Fixed penalty η on KL(π_old ‖ π_θ) of the pre-update policies (ProMP 5e-4)."""

    def __post_init__(self) -> None:
        if not self.inner_kl_coeff >= 0:
            raise ValueError(f"inner_kl_coeff must be >= 0, got {self.inner_kl_coeff}")


@dataclasses.dataclass(frozen=True)
class OptimConfig(BaseOptimConfig):
    """The outer schedule."""

    lr: float = 1e-3
    """Outer step size: Adam's, for maml_ppo and promp (ProMP 1e-3); TRPO ignores it."""
    iterations: int = 500
    """Meta-iterations (MAML scripts: 800 locomotion, 100 nav; pytorch-maml-rl 500)."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The MAML test protocol on run.num_eval_tasks held-out tasks, and its baselines."""

    steps: int = 3
    """Adaptation steps K; the curves report returns after 0..K steps."""
    episodes_per_task: int | None = None
    """Episodes per task and step (None: env.episodes_per_task; MAML: 4000 env steps)."""
    inner_lr: float | None = None
    """Step size of the first VPG step (None: inner.lr; MAML 0.1, nav script 0.5)."""
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
    oracle_n_steps: int = 2048
    """Rollout length per env of the oracle's PPO (SB3's default)."""
    oracle_batch_size: int = 64
    """Minibatch size of the oracle's PPO (SB3's default)."""
    oracle_normalize: bool = False
    """Normalize the oracle's observations and rewards (SB3 ``VecNormalize``, rl-baselines3-zoo)."""

    def __post_init__(self) -> None:
        check_positive(self, "episodes_per_task", "inner_lr", "later_inner_lr")
        check_positive(self, "pretrained_inner_lr", "random_inner_lr", "oracle_num_envs")
        check_positive(self, "oracle_n_steps", "oracle_batch_size")
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
    inner: InnerConfig = dataclasses.field(default_factory=InnerConfig)
    """The inner loop."""
    trpo: TRPOConfig | None = None
    """The outer TRPO step (maml_trpo only; defaults when left out)."""
    ppo: PPOConfig | None = None
    """The outer PPO-clip update (maml_ppo and promp only; defaults when left out)."""
    promp: ProMPConfig | None = None
    """ProMP's inner-KL penalty (promp only; defaults when left out)."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The outer schedule."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """Evaluation and baselines."""
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Seed, device, run directory, logging and checkpoints."""

    SECTION_USERS = {
        "trpo": frozenset({"maml_trpo", "cavia_trpo"}),
        "ppo": frozenset({"maml_ppo", "promp"}),
        "promp": frozenset({"promp"}),
    }
    RENAMED_KEYS = {
        "algo.inner_lr": "inner.lr",
        "algo.inner_steps": "inner.steps",
        "algo.first_order": "inner.first_order",
        "algo.learn_inner_lr": "inner.learn_lr",
        "algo.inner_estimator": "inner.estimator",
        **{f"algo.{k}": f"trpo.{k}" for k in TRPO_KEYS},
        "algo.clip_eps": "ppo.clip_eps",
        "algo.ppo_epochs": "ppo.epochs",
        "algo.inner_kl_coeff": "promp.inner_kl_coeff",
        "optim.outer_lr": "optim.lr",
    }

    def __post_init__(self) -> None:
        apply_sections(self, self.SECTION_USERS)
        cavia = self.algo.name == "cavia_trpo"
        if cavia != (self.policy.context_size > 0):
            raise ValueError(
                "policy.context_size must be >= 1 for algo.name=cavia_trpo and 0 otherwise, got "
                f"{self.policy.context_size} for {self.algo.name!r}"
            )
        if cavia and self.inner.learn_lr:
            raise ValueError("inner.learn_lr does not apply to cavia_trpo (only a context adapts)")


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
