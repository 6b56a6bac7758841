"""Per-task divergence check of a sinusoid MAML run (issue 16), independent of the evaluator.

Draws the same 600 test tasks as ``metarl train``'s evaluation (seed ``run.seed + 1``, chunks of
25), adapts each task alone in float64 with plain gradient steps of size ``inner.lr``, and
prints the mean/median query MSE after 1/5/10 steps, the tasks whose MSE at some step >= 1 is
above 10 and above their unadapted MSE, or not finite (diverging), and ``α·λ_max`` of the
support loss's Gauss-Newton matrix at the meta-parameters (``(2/K) J Jᵀ``; gradient descent on
a quadratic with this curvature diverges when it is > 2).

usage: PYTHONPATH=. python results/maml-sinusoid-diagnosis/diagnose.py RUN_DIR [CHECKPOINT [ALPHA]]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, jacrev

from metarl.algorithms.supervised import SupervisedConfig, build_family, build_model
from metarl.config import load_config, load_yaml
from metarl.config_renames import migrate_config


def main(run_dir: str, checkpoint: str | None = None, alpha: str | None = None) -> None:
    """Prints the divergence summary of ``run_dir``'s last (or the given) checkpoint.

    ``alpha`` overrides the step size (default: the run's ``inner.lr``).
    """
    torch.set_num_threads(1)
    raw = load_yaml((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    cfg = load_config(SupervisedConfig, migrate_config(SupervisedConfig, raw)[0])  # older keys
    path = checkpoint or sorted((Path(run_dir) / "checkpoints").glob("*.pt"))[-1]
    state = torch.load(path, weights_only=True)
    params = {k: v.double() for k, v in state["params"].items()}
    model = build_model(cfg, torch.Generator(), torch.device("cpu"), embedding=False).double()
    family = build_family(cfg.task, "test", torch.device("cpu"))
    gen = torch.Generator().manual_seed(cfg.run.seed + 1)
    alpha, steps = float(alpha or cfg.inner.lr), 10
    names = list(params)

    def unflat(v: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for k in names:
            n = params[k].numel()
            out[k] = v[i : i + n].view(params[k].shape)
            i += n
        return out

    def predict(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, unflat(v), (x,))

    theta = torch.cat([params[k].reshape(-1) for k in names])
    curves, sharp, info = [], [], []
    for start in range(0, cfg.run.num_eval_tasks, 25):
        batch = family.sample(min(25, cfg.run.num_eval_tasks - start), gen, training=False)
        for t in range(batch.support_x.shape[0]):
            sx, sy = batch.support_x[t].double(), batch.support_y[t].double()
            qx, qy = batch.query_x[t].double(), batch.query_y[t].double()
            jac = jacrev(lambda w, sx=sx: predict(w, sx).view(-1))(theta)
            sharp.append(alpha * 2 / len(sx) * torch.linalg.eigvalsh(jac @ jac.T).max().item())
            v, curve = theta.clone(), []
            for s in range(steps + 1):
                curve.append(torch.nn.functional.mse_loss(predict(v, qx), qy).item())
                if s < steps:
                    v = v.detach().requires_grad_()
                    loss = torch.nn.functional.mse_loss(predict(v, sx), sy)
                    (g,) = torch.autograd.grad(loss, v)
                    v = (v - alpha * g).detach()
            curves.append(curve)
            xs = sx.view(-1)
            info.append((batch.params["amplitude"][t].item(), xs.min().item(), xs.max().item()))
    m = np.array(curves)
    with np.errstate(all="ignore"):
        after = m[:, 1:]
        bad = ~np.isfinite(after) | ((after > 10) & (after > m[:, :1]))
        div = np.flatnonzero(bad.any(axis=1))
        sharp_a = np.array(sharp)
        print(f"{path} alpha={alpha} tasks={len(m)} eval_seed={cfg.run.seed + 1}")
        at = m[:, [1, 5, 10]]
        print("mean   MSE after 1/5/10 steps:", np.round(at.mean(0), 3).tolist())
        print("median MSE after 1/5/10 steps:", np.round(np.median(at, 0), 3).tolist())
        print(f"diverging tasks (MSE > 10 and above the unadapted MSE at a step >= 1): {len(div)}")
        print("  diverged after step 1..10:", bad.sum(0).tolist())
        print("  MSE > 10 after step 1..10:", (~(after <= 10)).sum(0).tolist())
        pct = np.percentile(sharp_a, [50, 90, 99, 100]).round(2).tolist()
        print(f"alpha*lambda_max percentiles 50/90/99/100: {pct}; > 2: {np.mean(sharp_a > 2):.1%}")
        for i in div[:12]:
            amp, lo, hi = info[i]
            print(
                f"  task {i}: A={amp:.2f} support x in [{lo:.2f}, {hi:.2f}] "
                f"alpha*lambda={sharp_a[i]:.2f} MSE steps 0-5: {np.round(m[i, :6], 2).tolist()}"
            )


if __name__ == "__main__":
    main(*sys.argv[1:4])
