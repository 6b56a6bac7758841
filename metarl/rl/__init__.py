"""RL maths of the shared core: returns and GAE, the linear baseline, TRPO, PPO, distributions.

Pure functions on batched tensors laid out ``[task, episode, time, ...]`` (or ``[task, time, ...]``
for RL² trials) with a validity ``mask``; see each module's docstring.
"""

from metarl.rl.baseline import (
    fit_linear_baseline,
    linear_baseline_features,
    linear_baseline_values,
    predict_linear_baseline,
)
from metarl.rl.distributions import (
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    diag_gaussian_entropy,
    diag_gaussian_kl,
    diag_gaussian_log_prob,
)
from metarl.rl.ppo import PPOLoss, ProMPLoss, mean_entropy, ppo_clip_loss, promp_loss, value_loss
from metarl.rl.returns import (
    GAEResult,
    discounted_returns,
    gae,
    masked_mean,
    normalize_advantages,
)
from metarl.rl.trpo import (
    KLFn,
    LossFn,
    Params,
    TRPOResult,
    conjugate_gradient,
    flat_grad,
    flatten_params,
    hessian_vector_product,
    make_hvp_fn,
    trpo_step,
    unflatten_like,
)

__all__ = [
    "GAEResult",
    "KLFn",
    "LossFn",
    "PPOLoss",
    "Params",
    "ProMPLoss",
    "TRPOResult",
    "categorical_entropy",
    "categorical_kl",
    "categorical_log_prob",
    "conjugate_gradient",
    "diag_gaussian_entropy",
    "diag_gaussian_kl",
    "diag_gaussian_log_prob",
    "discounted_returns",
    "fit_linear_baseline",
    "flat_grad",
    "flatten_params",
    "gae",
    "hessian_vector_product",
    "linear_baseline_features",
    "linear_baseline_values",
    "make_hvp_fn",
    "masked_mean",
    "mean_entropy",
    "normalize_advantages",
    "ppo_clip_loss",
    "predict_linear_baseline",
    "promp_loss",
    "trpo_step",
    "unflatten_like",
    "value_loss",
]
