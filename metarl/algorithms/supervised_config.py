"""Configuration of the supervised few-shot learners: YAML in configs/<learner>/.

The ``algo`` section names the learner; each learner's own settings live in a section that only
its configs have (``inner`` for the learners with an inner loop, ``mamlpp``, ``metasgd``,
``reptile``, ``matching``, ``protonet``), so a setting given to a learner that ignores it is an
error, as a typo is.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from metarl.algorithms.supervised_checks import (
    check_algo,
    check_model,
    check_optim,
    check_task,
)
from metarl.config import RunConfig
from metarl.config_checks import check_positive
from metarl.config_sections import InnerConfig, apply_sections
from metarl.config_sections import OptimConfig as BaseOptimConfig

__all__ = [
    "CONFIG_CLASS",
    "AlgoConfig",
    "EvalConfig",
    "AlphaMAMLConfig",
    "CAVIAConfig",
    "IMAMLConfig",
    "MetaLSTMConfig",
    "InnerConfig",
    "MANNConfig",
    "MAMLPPConfig",
    "MatchingConfig",
    "MetaOptNetConfig",
    "MetaSGDConfig",
    "ModelConfig",
    "OptimConfig",
    "ProtoNetConfig",
    "R2D2Config",
    "ReptileConfig",
    "SNAILConfig",
    "SupervisedConfig",
    "TaskConfig",
]

_INNER_LOOP = frozenset(
    {"maml", "fomaml", "metasgd", "anil", "mamlpp", "reptile"}
    | {"imaml", "cavia", "alphamaml", "metalstm"}
)
_MAML_VARIANTS = frozenset({"maml", "fomaml", "metasgd", "anil", "mamlpp"})


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """The few-shot problem: which task family, and how many classes, shots and tasks."""

    family: Literal["sinusoid", "omniglot", "miniimagenet"] = "sinusoid"
    """Task family: sinusoid regression (MAML §5.1), Omniglot or miniImageNet N-way K-shot
    classification."""
    ways: int = 5
    """Classes per task N (classification; ignored for sinusoid)."""
    shots: int = 10
    """Support examples per class K (sinusoid: support points per task) during training."""
    query_shots: int = 10
    """Query examples per class (sinusoid: query points per task) during training."""
    train_ways: int | None = None
    """Classes per training task if different from ways (ProtoNets trains 60-way)."""
    test_shots: int | None = None
    """Support examples per class at evaluation (default: shots; MAML sinusoid tests K=5)."""
    test_query_shots: int | None = None
    """Query examples per class at evaluation (default: query_shots)."""
    meta_batch_size: int = 25
    """Tasks per outer update."""
    protocol: Literal["maml", "protonets", "vinyals"] = "maml"
    """Omniglot split protocol: 1100/100/423 characters with random rotations; ProtoNets'
    1028/172/423 characters with each rotation a separate class (random permutation); or vinyals:
    the same class sizes with the published, mostly alphabet-disjoint Vinyals et al. split."""
    data_root: str | None = None
    """Omniglot: directory with images_background.zip and images_evaluation.zip (None: the
    default); miniImageNet: the folder of the 60,000 JPEGs (None: $METARL_MINIIMAGENET_ROOT)."""
    split_dir: str | None = None
    """miniImageNet: folder of train/val/test.csv (None: the shipped Ravi & Larochelle splits)."""
    num_characters: int | None = None
    """Use only this many characters per split (tiny runs and tests); None uses them all."""
    phase_range: tuple[float, float] = (0.0, math.pi)
    """Sinusoid phase range in radians (MAML: [0, π]; Reptile: [0, 2π])."""

    def __post_init__(self) -> None:
        check_task(self)

    @property
    def metric(self) -> str:
        """The evaluation metric of the family: "mse" or "accuracy"."""
        return "mse" if self.family == "sinusoid" else "accuracy"

    @property
    def name(self) -> str:
        """A short label such as "omniglot-5w1s" or "sinusoid-5shot" (the test setting)."""
        shots = self.test_shots or self.shots
        if self.family == "sinusoid":
            return f"sinusoid-{shots}shot"
        return f"{self.family}-{self.ways}w{shots}s"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: an MLP (sinusoid) or the conv4 few-shot backbone (images)."""

    network: Literal["mlp", "conv4_strided", "conv4_maxpool", "flat"] = "mlp"
    """mlp; conv4_strided: MAML's 64-filter stride-2 conv4; conv4_maxpool: conv4 with max-pool;
    flat: the raw pixels as one vector, no learned embedding (mann and snail only; Santoro et al.
    2016's MANN reads pixels)."""
    hidden: tuple[int, ...] = (40, 40)
    """Hidden layer widths of the MLP (MAML sinusoid: 40, 40)."""
    activation: Literal["relu", "tanh"] = "relu"
    """Hidden activation of the MLP."""
    init: Literal["torch", "maml"] = "torch"
    """MLP init: torch (PyTorch's default U(±1/sqrt(fan_in))) or maml (cbfinn/maml's
    construct_fc_weights: truncated normal with std 0.01, zero biases)."""
    filters: int = 64
    """Filters per conv layer of conv4."""

    def __post_init__(self) -> None:
        check_model(self)


@dataclasses.dataclass(frozen=True)
class AlgoConfig:
    """Which learner; its settings are in the sections named after it."""

    name: str = "maml"
    """maml, fomaml (first order), metasgd (learned per-parameter lr), anil (head-only inner
    loop), mamlpp (MAML++), reptile, imaml (implicit gradients), cavia (context adaptation),
    alphamaml (hypergradient step sizes), metalstm (an LSTM produces the updates),
    protonet, matching, relation, r2d2, metaoptnet, siamese, mann or snail."""

    def __post_init__(self) -> None:
        check_algo(self)


@dataclasses.dataclass(frozen=True)
class MAMLPPConfig:
    """MAML++ options (Antoniou et al. 2019); always on for mamlpp, opt-in for the MAML variants."""

    multi_step_loss: bool = False
    """Multi-step loss: weight the query loss after every inner step."""
    multi_step_loss_iterations: int = 0
    """Iterations over which the multi-step-loss weights anneal to the last step only."""
    per_step_lr: bool = False
    """LSLR: learned per-layer, per-step inner learning rates."""
    per_step_bn_weights: bool = False
    """BNWB: batch-norm weights and biases per inner step (conv4 only)."""

    def __post_init__(self) -> None:
        if self.multi_step_loss_iterations < 0:
            raise ValueError(
                f"multi_step_loss_iterations must be >= 0, got {self.multi_step_loss_iterations}"
            )


@dataclasses.dataclass(frozen=True)
class MetaSGDConfig:
    """Meta-SGD's learned per-parameter inner learning rates."""

    lr_range: tuple[float, float] = (0.005, 0.1)
    """The learned rates are initialised from U[low, high]."""

    def __post_init__(self) -> None:
        low, high = self.lr_range
        if not 0 < low <= high < math.inf:
            raise ValueError(f"lr_range must satisfy 0 < low <= high, got {low, high}")


@dataclasses.dataclass(frozen=True)
class IMAMLConfig:
    """iMAML's proximal inner problem and implicit meta-gradient (Rajeswaran et al. 2019)."""

    lam: float = 1.0
    """Strength λ of the proximal term λ/2 ||φ - θ||² of each task's inner problem."""
    cg_steps: int = 5
    """Conjugate-gradient steps solving (I + H/λ) x = g; 0 uses x = g (first order)."""
    proximal: Literal["every_step", "pull_back"] = "every_step"
    """every_step: gradient descent on L + λ/2 ||φ - θ||² (the paper's Eq. 4); pull_back: on L
    alone, then one step of the inner lr on λ/2 ||φ - θ||² (aravindr93/imaml_dev)."""
    cg_lam: float | None = None
    """λ of the CG matrix I + H/λ; None: lam. imaml_dev's (1 + 1) I + H/(λ + 10) is λ = 24 here."""

    def __post_init__(self) -> None:
        if not 0 < self.lam < math.inf:
            raise ValueError(f"lam must be > 0 and finite, got {self.lam}")
        if self.cg_steps < 0:
            raise ValueError(f"cg_steps must be >= 0, got {self.cg_steps}")
        if self.cg_lam is not None and not 0 < self.cg_lam < math.inf:
            raise ValueError(f"cg_lam must be > 0 and finite (or null: lam), got {self.cg_lam}")


@dataclasses.dataclass(frozen=True)
class CAVIAConfig:
    """CAVIA's context parameters (Zintgraf et al. 2019)."""

    context_size: int = 4
    """Context parameters, reset to 0 for each task and the only ones adapted in the inner loop."""

    def __post_init__(self) -> None:
        if self.context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {self.context_size}")


@dataclasses.dataclass(frozen=True)
class AlphaMAMLConfig:
    """AlphaMAML's hypergradient descent on the inner and outer step sizes (Behl et al. 2019)."""

    inner_hyper_lr: float = 1e-4
    """Hypergradient step size of the inner learning rate α (α -= this · dL/dα)."""
    outer_hyper_lr: float = 1e-7
    """Hypergradient step size of Adam's learning rate β (Baydin et al. 2018, Adam-HD)."""

    def __post_init__(self) -> None:
        for name in ("inner_hyper_lr", "outer_hyper_lr"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be >= 0 and finite, got {value}")


@dataclasses.dataclass(frozen=True)
class MetaLSTMConfig:
    """The LSTM meta-learner of Ravi & Larochelle (2017)."""

    hidden_size: int = 20
    """Hidden units of the first, coordinate-wise LSTM layer (paper: 20)."""
    input_bias_range: tuple[float, float] = (-5.0, -4.0)
    """Initial input-gate bias b_I ~ U[low, high] (paper: small, so small first steps)."""
    forget_bias_range: tuple[float, float] = (4.0, 6.0)
    """Initial forget-gate bias b_F ~ U[low, high] (paper: large, so the learner's weights stay)."""

    def __post_init__(self) -> None:
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size}")
        for name in ("input_bias_range", "forget_bias_range"):
            low, high = getattr(self, name)
            if not -math.inf < low <= high < math.inf:
                raise ValueError(f"{name} must be finite with low <= high, got {[low, high]}")


@dataclasses.dataclass(frozen=True)
class ReptileConfig:
    """Reptile's inner loop: Adam with β1 = 0 on minibatches of the support set."""

    batch_size: int = 10
    """Support examples per inner minibatch."""
    adam_beta2: float = 0.999
    """β2 of the inner Adam (β1 = 0, as in supervised-reptile)."""
    eval_batch_size: int | None = None
    """Support examples per inner minibatch at evaluation (supervised-reptile's --eval-batch);
    None uses batch_size."""

    def __post_init__(self) -> None:
        # batch_size is checked by the learner against the support set, when built.
        if not 0 <= self.adam_beta2 < 1:
            raise ValueError(f"adam_beta2 must be in [0, 1), got {self.adam_beta2}")


@dataclasses.dataclass(frozen=True)
class MatchingConfig:
    """Matching Networks' full-context embeddings."""

    full_context_embeddings: bool = False
    """Full-context embeddings (bidirectional LSTM + attention LSTM)."""
    fce_steps: int = 5
    """Processing steps of the attention LSTM over the support set."""


@dataclasses.dataclass(frozen=True)
class ProtoNetConfig:
    """Prototypical Networks' distance."""

    distance: Literal["euclidean", "cosine"] = "euclidean"
    """Distance between embeddings and prototypes (squared Euclidean in the paper)."""


@dataclasses.dataclass(frozen=True)
class MANNConfig:
    """MANN's controller and LRUA memory (Santoro et al. 2016)."""

    controller_size: int = 200
    """LSTM controller hidden units."""
    memory_slots: int = 128
    """Memory slots N."""
    memory_width: int = 40
    """Memory width (key size)."""
    read_heads: int = 4
    """Read heads (each writes with its own key and gate)."""
    usage_decay: float = 0.95
    """Usage decay γ in [0, 1]."""
    write_vector: Literal["key", "separate"] = "key"
    """What a head writes: its key (Santoro et al. 2016 §3.2) or a vector of its own."""
    train_loss: Literal["query", "every_step"] = "query"
    """At training, the loss on each query read after the support (``query``, as evaluated), or
    Santoro et al. 2016's episodes: every drawing of the task (support and query) in one random
    sequence with the loss at every step (``every_step``)."""

    def __post_init__(self) -> None:
        check_positive(self, "controller_size", "memory_slots", "memory_width", "read_heads")
        if self.read_heads > self.memory_slots:
            raise ValueError(
                f"read_heads ({self.read_heads}) must be <= memory_slots ({self.memory_slots})"
            )
        if not 0.0 <= self.usage_decay <= 1.0:
            raise ValueError(f"usage_decay must be in [0, 1], got {self.usage_decay}")
        if self.write_vector not in ("key", "separate"):
            raise ValueError(f"write_vector must be 'key' or 'separate', got {self.write_vector!r}")
        if self.train_loss not in ("query", "every_step"):
            raise ValueError(f"train_loss must be 'query' or 'every_step', got {self.train_loss!r}")


@dataclasses.dataclass(frozen=True)
class SNAILConfig:
    """SNAIL's attention and temporal-convolution sizes (Mishra et al. 2018, Omniglot model)."""

    attention_keys: tuple[int, ...] = (64, 256, 512)
    """Key size of each attention block (one TC block between consecutive ones)."""
    attention_values: tuple[int, ...] = (32, 128, 256)
    """Value size of each attention block."""
    tc_filters: int = 128
    """Filters of each dense block of a TC block."""

    def __post_init__(self) -> None:
        keys, values = self.attention_keys, self.attention_values
        if not keys or len(keys) != len(values) or min(*keys, *values) < 1:
            raise ValueError(
                "attention_keys and attention_values must be equally many sizes >= 1, got "
                f"{list(keys)} and {list(values)}"
            )
        check_positive(self, "tc_filters")


@dataclasses.dataclass(frozen=True)
class R2D2Config:
    """R2-D2's ridge-regression head (Bertinetto et al. 2019): its learned scalars' start."""

    lam: float = 50.0
    """Initial ridge regulariser λ (learned, as log λ)."""
    scale: float = 10.0
    """Initial output scale α (learned); the offset β starts at 0."""

    def __post_init__(self) -> None:
        check_positive(self, "lam", "scale")


@dataclasses.dataclass(frozen=True)
class MetaOptNetConfig:
    """MetaOptNet's head (Lee et al. 2019): a multi-class SVM, or ridge regression (RR)."""

    head: Literal["svm", "ridge"] = "svm"
    """svm: Crammer-Singer linear SVM; ridge: MetaOptNet-RR (the R2-D2 head, λ fixed)."""
    c: float = 0.1
    """The SVM's C (inverse regularisation)."""
    solver_steps: int = 15
    """FISTA steps of the SVM dual solver, unrolled for the meta-gradient."""
    lam: float = 50.0
    """Ridge regulariser λ of the ridge head (fixed)."""
    scale: float = 1.0
    """Initial output scale (learned)."""

    def __post_init__(self) -> None:
        check_positive(self, "c", "solver_steps", "lam", "scale")


@dataclasses.dataclass(frozen=True)
class OptimConfig(BaseOptimConfig):
    """The outer optimiser and its schedule."""

    lr: float = 1e-3
    """Outer (meta) step size (Adam 1e-3 in MAML; Reptile's outer step size 1.0)."""
    iterations: int = 1000
    """Outer iterations (meta-batches)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """Outer optimiser (Reptile uses sgd: its update is a step towards the adapted weights)."""
    schedule: Literal["constant", "cosine", "linear", "step"] = "constant"
    """constant; cosine to min_lr (MAML++); linear to 0 (Reptile); step: ×gamma every step_size."""
    min_lr: float = 1e-5
    """Final learning rate of the cosine schedule."""
    step_size: int = 2000
    """Iterations between decays of the step schedule (ProtoNets: halve every 20 epochs)."""
    gamma: float = 0.5
    """Decay factor of the step schedule."""
    grad_clip: float | None = None
    """Clip each meta-gradient element to ±grad_clip (MAML MiniImageNet: 10); None: no clip."""

    def __post_init__(self) -> None:
        check_optim(self)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The few-shot evaluation of the learners with an inner loop."""

    steps: int = 10
    """Inner steps at evaluation; the curve reports steps 0..steps."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class SupervisedConfig:
    """A supervised few-shot experiment: one YAML file in configs/ maps onto it."""

    task: TaskConfig = dataclasses.field(default_factory=TaskConfig)
    """The few-shot problem."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The network."""
    algo: AlgoConfig = dataclasses.field(default_factory=AlgoConfig)
    """The learner."""
    inner: InnerConfig | None = None
    """The inner loop (the learners that adapt by gradient steps; defaults when left out)."""
    mamlpp: MAMLPPConfig | None = None
    """MAML++ options (the MAML variants; defaults when left out)."""
    metasgd: MetaSGDConfig | None = None
    """Meta-SGD's learned learning rates (metasgd only)."""
    imaml: IMAMLConfig | None = None
    """λ and the conjugate-gradient steps (imaml only)."""
    cavia: CAVIAConfig | None = None
    """The context parameters (cavia only)."""
    alphamaml: AlphaMAMLConfig | None = None
    """The hypergradient step sizes (alphamaml only)."""
    metalstm: MetaLSTMConfig | None = None
    """The LSTM meta-learner (metalstm only)."""
    reptile: ReptileConfig | None = None
    """Reptile's inner minibatches and Adam (reptile only)."""
    matching: MatchingConfig | None = None
    """Full-context embeddings (matching only)."""
    protonet: ProtoNetConfig | None = None
    """The distance (protonet only)."""
    mann: MANNConfig | None = None
    """The controller and memory (mann only)."""
    snail: SNAILConfig | None = None
    """The attention and TC sizes (snail only)."""
    r2d2: R2D2Config | None = None
    """The ridge head's initial scalars (r2d2 only)."""
    metaoptnet: MetaOptNetConfig | None = None
    """The SVM or ridge head (metaoptnet only)."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The outer optimiser."""
    eval: EvalConfig | None = None
    """The evaluation's inner steps (the learners with an inner loop)."""
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    """Seed, device, run directory, logging and checkpoints."""

    SECTION_USERS = {
        "inner": _INNER_LOOP,
        "mamlpp": _MAML_VARIANTS,
        "metasgd": frozenset({"metasgd"}),
        "imaml": frozenset({"imaml"}),
        "cavia": frozenset({"cavia"}),
        "alphamaml": frozenset({"alphamaml"}),
        "metalstm": frozenset({"metalstm"}),
        "reptile": frozenset({"reptile"}),
        "matching": frozenset({"matching"}),
        "protonet": frozenset({"protonet"}),
        "mann": frozenset({"mann"}),
        "snail": frozenset({"snail"}),
        "r2d2": frozenset({"r2d2"}),
        "metaoptnet": frozenset({"metaoptnet"}),
        "eval": _INNER_LOOP,
    }
    RENAMED_KEYS = {
        "algo.inner_lr": "inner.lr",
        "algo.inner_steps": "inner.steps",
        "algo.first_order": "inner.first_order",
        "algo.eval_inner_steps": "eval.steps",
        **{
            f"algo.{k}": f"mamlpp.{k}"
            for k in (
                "multi_step_loss",
                "multi_step_loss_iterations",
                "per_step_lr",
                "per_step_bn_weights",
            )
        },
        "algo.meta_sgd_lr_range": "metasgd.lr_range",
        "algo.inner_batch_size": "reptile.batch_size",
        "algo.inner_adam_beta2": "reptile.adam_beta2",
        "algo.eval_inner_batch_size": "reptile.eval_batch_size",
        "algo.full_context_embeddings": "matching.full_context_embeddings",
        "algo.fce_steps": "matching.fce_steps",
        "algo.distance": "protonet.distance",
        "optim.outer_lr": "optim.lr",
    }

    def __post_init__(self) -> None:
        apply_sections(self, self.SECTION_USERS)
        imaml, inner = self.imaml, self.inner
        if imaml is not None and inner is not None and imaml.proximal == "pull_back":
            if (shrink := inner.lr * imaml.lam) >= 1:
                raise ValueError(
                    f"imaml.proximal: pull_back moves φ by inner.lr x imaml.lam = {shrink:g} of "
                    "its way back to θ, which must be < 1 (1 undoes the adaptation, more "
                    "overshoots θ); lower inner.lr or imaml.lam"
                )


CONFIG_CLASS = SupervisedConfig
"""The config class ``metarl train`` loads for the supervised learners."""
