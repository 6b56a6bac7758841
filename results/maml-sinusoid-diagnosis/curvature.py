"""Where the support loss's curvature lives in a sinusoid MAML run (issue 16, seed 2).

For the 600 test tasks of ``metarl train``'s evaluation (seed ``run.seed + 1``, chunks of 25):

- ``head``: ``α·λ_max`` of the support loss's Hessian restricted to the output layer. The loss is
  exactly quadratic there, with Hessian ``(2/K) Φᵀ Φ`` (``Φ``: the last hidden features with a
  column of ones), so a component along a head direction with ``α·λ > 2`` grows by ``|1 − α·λ|``
  every step for as long as the features stay put. Cheap (forward passes only).
- ``--full``: ``α·λ_max`` of the full Hessian (float64, 1,761 parameters) at the meta-parameters
  and after each of 5 inner steps, for the diverging tasks (as ``diagnose.py`` defines them) and a
  random 10 % of the others. Slow: ~20 min on one loaded core.

usage: PYTHONPATH=. python results/maml-sinusoid-diagnosis/curvature.py RUN_DIR ALPHA [--full]
(``RUN_DIR`` holds ``config.yaml`` and a ``checkpoint_*.pt``)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, hessian

from metarl.algorithms.supervised import SupervisedConfig, build_family, build_model
from metarl.config import load_config, load_yaml
from metarl.config_renames import migrate_config


def _load(run: Path) -> tuple[SupervisedConfig, dict[str, torch.Tensor]]:
    raw = load_yaml((run / "config.yaml").read_text(encoding="utf-8"))
    cfg = load_config(SupervisedConfig, migrate_config(SupervisedConfig, raw)[0])
    state = torch.load(sorted(run.glob("checkpoint_*.pt"))[-1], weights_only=True)
    return cfg, {k: v.double() for k, v in state["params"].items()}


def head_curvature(run: Path, alpha: float) -> None:
    """Prints the head block's ``α·λ_max`` percentiles and the feature and head scales."""
    cfg, p = _load(run)
    family = build_family(cfg.task, "test", torch.device("cpu"))
    gen = torch.Generator().manual_seed(cfg.run.seed + 1)
    lam, feat = [], []
    for _ in range(cfg.run.num_eval_tasks // 25):
        x = family.sample(25, gen, training=False).support_x.double()
        h = torch.relu(x @ p["body.0.weight"].T + p["body.0.bias"])
        h = torch.relu(h @ p["body.2.weight"].T + p["body.2.bias"])
        phi = torch.cat([h, torch.ones_like(h[..., :1])], -1)  # [task, K, 41]
        gram = phi.transpose(1, 2) @ phi
        lam += (alpha * 2 / phi.shape[1] * torch.linalg.eigvalsh(gram)[:, -1]).tolist()
        feat += h.norm(dim=-1).mean(1).tolist()
    a = np.array(lam)
    pct = np.percentile(a, [50, 90, 99, 100]).round(2).tolist()
    print(
        f"{run.name} head alpha*lambda_max 50/90/99/100: {pct}; > 2: {np.mean(a > 2):.1%}; "
        f"mean hidden feature norm {np.mean(feat):.1f}; head weight norm "
        f"{p['head.weight'].norm().item():.2f}"
    )


def full_curvature(run: Path, alpha: float) -> None:
    """Prints the full Hessian's ``α·λ_max`` along 5 inner steps, diverging tasks vs others."""
    cfg, params = _load(run)
    model = build_model(cfg, torch.Generator(), torch.device("cpu"), embedding=False).double()
    family = build_family(cfg.task, "test", torch.device("cpu"))
    gen, pick = torch.Generator().manual_seed(cfg.run.seed + 1), np.random.default_rng(0)
    names = list(params)
    sizes = [params[k].numel() for k in names]

    def predict(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        parts = dict(zip(names, torch.split(v, sizes), strict=True))
        return functional_call(model, {k: parts[k].view(params[k].shape) for k in names}, (x,))

    theta = torch.cat([params[k].reshape(-1) for k in names])
    rows: list[tuple[bool, float, list[float]]] = []
    for _ in range(cfg.run.num_eval_tasks // 25):
        b = family.sample(25, gen, training=False)
        for t in range(25):
            sx, sy, qx, qy = (
                z[t].double() for z in (b.support_x, b.support_y, b.query_x, b.query_y)
            )

            def loss(v: torch.Tensor, sx: torch.Tensor = sx, sy: torch.Tensor = sy) -> torch.Tensor:
                return torch.nn.functional.mse_loss(predict(v, sx), sy)

            v, traj, mse = theta.clone(), [], []
            for _ in range(11):
                traj.append(v)
                mse.append(torch.nn.functional.mse_loss(predict(v, qx), qy).item())
                v = v - alpha * torch.func.grad(loss)(v)
            m = np.array(mse)
            bad = bool((~np.isfinite(m[1:]) | ((m[1:] > 10) & (m[1:] > m[0]))).any())
            if bad or pick.random() < 0.1:
                lam = [alpha * torch.linalg.eigvalsh(hessian(loss)(w))[-1].item() for w in traj[:6]]
                rows.append((bad, b.params["amplitude"][t].item(), lam))
    for flag, what in ((True, "diverging"), (False, "sample of the others")):
        sel = [r for r in rows if r[0] == flag]
        at0 = np.array([r[2][0] for r in sel])
        top = np.array([max(r[2]) for r in sel])
        print(
            f"{what}: {len(sel)} tasks, alpha*lambda_max(H) at theta median {np.median(at0):.2f} "
            f"range {at0.min():.2f}-{at0.max():.2f}, > 2: {np.mean(at0 > 2):.0%}; largest over "
            f"steps 0-5 > 2: {np.mean(top > 2):.0%}; median amplitude "
            f"{np.median([r[1] for r in sel]):.2f}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    head_curvature(Path(sys.argv[1]), float(sys.argv[2]))
    if "--full" in sys.argv[3:]:
        full_curvature(Path(sys.argv[1]), float(sys.argv[2]))
