"""Plot a run's training curves from its ``metrics.csv`` (no TensorBoard needed).

    python scripts/plot_metrics.py RUN_DIR --keys train/pre_success train/post_success \
        --out RUN_DIR/train_success.png [--smooth 5] [--scale 100 --ylabel "success rate (%)"]

Each key is one line against the iteration (the ``step`` column); ``--smooth k`` adds a centred
moving average over ``k`` iterations (the raw values stay, faint). A key the run never logged is
an error naming the keys it has. A CSV with the plotted values is written beside the PNG.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from metarl.logger import read_metrics


def curves(run_dir: Path, keys: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``key -> (iterations, values)`` from ``run_dir/metrics.csv``, in step order.

    Raises:
        FileNotFoundError: If the run has no metrics.csv.
        KeyError: If a key was never logged (the message lists those that were).
    """
    found = read_metrics(run_dir / "metrics.csv", keys)
    out = {}
    for key, by_step in found.items():
        steps = np.array(sorted(by_step))
        out[key] = (steps, np.array([by_step[s] for s in steps]))
    return out


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over ``width`` points (shrinking at the ends)."""
    if width <= 1:
        return values
    half = width // 2
    return np.array([values[max(0, i - half) : i + half + 1].mean() for i in range(len(values))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--keys", nargs="+", required=True, help="metric keys, e.g. train/loss")
    parser.add_argument("--out", type=Path, required=True, help="PNG path (a CSV goes beside it)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average width")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply values (100: percent)")
    parser.add_argument("--ylabel", default=None)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    if args.smooth < 1:
        parser.error(f"--smooth must be >= 1, got {args.smooth}")
    try:
        lines = curves(args.run_dir, args.keys)
    except (FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    rows: list[list[object]] = []
    for key, (steps, values) in lines.items():
        values = values * args.scale
        line = ax.plot(steps + 1, smooth(values, args.smooth), label=key)[0]
        if args.smooth > 1:
            ax.plot(steps + 1, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
        rows += [[key, int(s) + 1, float(v)] for s, v in zip(steps, values, strict=True)]
    ax.set_xlabel("iteration")
    ax.set_ylabel(args.ylabel or ("value" if len(lines) > 1 else args.keys[0]))
    ax.set_title(args.title or str(args.run_dir.name))
    ax.grid(alpha=0.3)
    ax.legend()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    with open(args.out.with_suffix(".csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "iteration", "value"])
        writer.writerows(rows)
    print(f"written: {args.out} ({', '.join(args.keys)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
