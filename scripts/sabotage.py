"""Break each feature on purpose and check that the tests notice.

Each sabotage is a monkeypatch of one attribute (named ``module:Attribute.path``), applied inside
a fresh Python process that then runs the sabotage's own test subset with ``pytest.main``; no
source file is edited. A sabotage is *caught* when at least one of its tests fails. The script
exits non-zero if any sabotage survives (its tests all pass), if a sabotage's tests were all
skipped under ``CI=true``, or if a patch target no longer exists (so a refactor cannot silently
disable a sabotage: update the target instead).

Usage::

    python scripts/sabotage.py            # every sabotage, two at a time
    python scripts/sabotage.py --list     # names, targets and tests
    python scripts/sabotage.py --only maml-first-order --jobs 1

Every new learner adds its sabotage here, with the tests that must catch it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------
# the sabotages: each ``patch`` receives the original attribute and returns its replacement
# ----------------------------------------------------------------------------------------------


def _force_first_order(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.first_order = True

    return patched


def _detach_learned_step_sizes(inner_lr: Callable[..., Any]) -> Callable[..., Any]:
    import torch

    def detach(lr: Any) -> Any:
        if isinstance(lr, torch.Tensor):
            return lr.detach()
        if isinstance(lr, dict):
            return {k: detach(v) for k, v in lr.items()}
        if isinstance(lr, list):
            return [detach(v) for v in lr]
        return lr

    @functools.wraps(inner_lr)
    def patched(self: Any, lrs: Any, steps: int) -> Any:
        return detach(inner_lr(self, lrs, steps))

    return patched


def _anil_adapts_the_body(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.adapt_keys = None  # the inner loop adapts every layer, as MAML

    return patched


def _anil_freezes_the_body(outer_loss: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(outer_loss)
    def patched(self: Any, params: Any, batch: Any, iteration: int, **kwargs: Any) -> Any:
        if self.adapt_keys is not None:  # ANIL: no outer gradient reaches the body
            params = {k: v if k in self.adapt_keys else v.detach() for k, v in params.items()}
        return outer_loss(self, params, batch, iteration, **kwargs)

    return patched


def _flip_the_ratio(loss: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(loss)
    def patched(logp_new: Any, logp_old: Any, *args: Any, **kwargs: Any) -> Any:
        return loss(2 * logp_old.detach() - logp_new, logp_old, *args, **kwargs)  # 1 / ratio

    return patched


def _drop_the_inner_kl(loss: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(loss)
    def patched(*args: Any, **kwargs: Any) -> Any:
        return loss(*args, **{**kwargs, "inner_kl_coeff": 0.0})

    return patched


def _no_clipping(loss: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(loss)
    def patched(logp_new: Any, logp_old: Any, advantages: Any, mask: Any, clip_eps: float, **kw):
        return loss(logp_new, logp_old, advantages, mask, 1e6, **kw)

    return patched


def _adam_forgets_its_moments(adam: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(adam)
    def patched(*args: Any, **kwargs: Any) -> Any:
        inner = adam(*args, **kwargs)

        def update(params: Any, grads: Any, state: Any, lr: Any) -> Any:
            return inner.update(params, grads, inner.init(params), lr)  # fresh state every step

        return inner._replace(update=update)

    return patched


def _reversed_kl(kl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(kl)
    def patched(old: Any, new: Any) -> Any:
        return kl(new, old)

    return staticmethod(patched)


def _halved_kl(kl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(kl)
    def patched(old: Any, new: Any) -> Any:
        return 0.5 * kl(old, new)

    return staticmethod(patched)


def _halved_kl_method(kl: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(kl)
    def patched(self: Any, old: Any, new: Any) -> Any:
        return 0.5 * kl(self, old, new)

    return patched


def _evaluate_on_training_classes(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def patched(self: Any, cfg: Any, split: str, device: Any) -> None:
        init(self, cfg, "train", device)
        self.split = split  # the label still says held-out

    return patched


def _swap_two_sub_envs_tasks(set_tasks: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(set_tasks)
    def patched(self: Any, tasks: Any) -> None:
        tasks = list(tasks)
        if len(tasks) > 1:
            tasks[0], tasks[1] = tasks[1], tasks[0]
        set_tasks(self, tasks)

    return patched


def _purge_one_step_too_many(purge: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(purge)
    def patched(self: Any, purge_from: int) -> None:
        purge(self, max(purge_from - 1, 0))  # the checkpoint's own step is lost on resume

    return patched


def _resume_without_state(load: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(load)
    def patched(self: Any, state: Any) -> None:
        return None  # the loop continues at the checkpoint's iteration from fresh parameters

    return patched


@dataclasses.dataclass(frozen=True)
class Sabotage:
    """One deliberate break and the tests that must catch it."""

    name: str
    """Short id, used by --only."""
    target: str
    """``module:Attribute.path`` replaced by ``patch(original)``."""
    patch: Callable[[Any], Any]
    """Returns the replacement for the original attribute."""
    tests: tuple[str, ...]
    """pytest node ids or paths (relative to the repository root), plus options such as -k."""
    what: str
    """What breaks, in words."""


_MAML_GRAD = "tests/metarl/algorithms/test_maml_meta_gradient.py"
_DRIVER = "tests/metarl/test_driver.py"
_MAML_RL = "tests/metarl/algorithms/test_maml_rl.py"

SABOTAGES: tuple[Sabotage, ...] = (
    Sabotage(
        "maml-first-order",
        "metarl.algorithms.maml:MAMLLearner.__init__",
        _force_first_order,
        (_MAML_GRAD,),
        "supervised MAML silently drops second derivatives",
    ),
    Sabotage(
        "mamlpp-detach-step-sizes",
        "metarl.algorithms.maml:MAMLLearner._inner_lr",
        _detach_learned_step_sizes,
        (_MAML_GRAD, "-k", "metasgd or mamlpp or step_sizes"),
        "MAML++ / Meta-SGD step sizes get no meta-gradient",
    ),
    Sabotage(
        "anil-adapts-body",
        "metarl.algorithms.maml:MAMLLearner.__init__",
        _anil_adapts_the_body,
        (_MAML_GRAD, "-k", "anil"),
        "ANIL's inner loop adapts the body too",
    ),
    Sabotage(
        "anil-frozen-body",
        "metarl.algorithms.maml:MAMLLearner.outer_loss",
        _anil_freezes_the_body,
        (_MAML_GRAD, "-k", "anil"),
        "ANIL's body gets no gradient from the outer loop",
    ),
    Sabotage(
        "promp-flip-ratio",
        "metarl.algorithms.maml_rl:promp_loss",
        _flip_the_ratio,
        (_MAML_RL, "-k", "away_from_the_old and promp"),
        "ProMP's likelihood ratio is inverted",
    ),
    Sabotage(
        "promp-drop-inner-kl",
        "metarl.algorithms.maml_rl:promp_loss",
        _drop_the_inner_kl,
        (_MAML_RL, "-k", "away_from_the_old and promp"),
        "ProMP loses its inner-KL penalty",
    ),
    Sabotage(
        "reptile-adam-forgets-moments",
        "metarl.algorithms.reptile:adam",
        _adam_forgets_its_moments,
        ("tests/metarl/algorithms/test_reptile.py", "-k", "adam or reptiles_update"),
        "Reptile's inner Adam restarts its moments and step count at every inner step",
    ),
    Sabotage(
        "maml-ppo-no-clip",
        "metarl.algorithms.maml_rl:ppo_clip_loss",
        _no_clipping,
        (_MAML_RL, "-k", "away_from_the_old and maml_ppo"),
        "MAML-PPO's outer objective is not clipped",
    ),
    Sabotage(
        "maml-rl-reversed-kl",
        "metarl.rl.policies:GaussianMLPPolicy.kl",
        _reversed_kl,
        (_MAML_RL, "-k", "away_from_the_old"),
        "the outer KL is KL(new || old) instead of KL(old || new)",
    ),
    Sabotage(
        "trpo-underestimated-kl",
        "metarl.rl.policies:GaussianMLPPolicy.kl",
        _halved_kl,
        (_MAML_RL, "-k", "kl_bound and Navigation"),
        "TRPO measures half the KL, so its steps break the trust region",
    ),
    Sabotage(
        "rl2-trpo-underestimated-kl",
        "metarl.rl.recurrent:RecurrentPolicy.kl",
        _halved_kl_method,
        (
            "tests/metarl/algorithms/test_rl2.py::test_trpo_update_respects_the_kl_bound_and_fits_the_value",
        ),
        "RL² TRPO measures half the KL, so its steps break the trust region",
    ),
    Sabotage(
        "metric-eval-on-train-classes",
        "metarl.algorithms.supervised:TaskFamily.__init__",
        _evaluate_on_training_classes,
        ("tests/metarl/algorithms/test_metric_learners.py", "-k", "held_out"),
        "held-out evaluation samples the training characters",
    ),
    Sabotage(
        "vector-swap-sub-env-tasks",
        "envs.vector:TaskVectorEnv.set_tasks",
        _swap_two_sub_envs_tasks,
        ("tests/envs/test_vector_envs.py", "-k", "own_task"),
        "the vector env gives sub-envs 0 and 1 each other's task",
    ),
    Sabotage(
        "resume-drops-a-row",
        "metarl.logger:CSVLogger._purge",
        _purge_one_step_too_many,
        (_DRIVER, "-k", "resume and supervised"),
        "resuming from checkpoint k also drops the metrics of step k - 1",
    ),
    Sabotage(
        "resume-without-state",
        "metarl.algorithms.supervised:SupervisedExperiment.load_state_dict",
        _resume_without_state,
        (_DRIVER, "-k", "resume and supervised"),
        "a resumed supervised run continues from fresh parameters",
    ),
)

# ----------------------------------------------------------------------------------------------
# applying one sabotage (in the child process) and running them all (in the parent)
# ----------------------------------------------------------------------------------------------


class TargetMissing(LookupError):
    """A sabotage's patch target does not exist any more."""


def resolve(target: str) -> tuple[Any, str, Any]:
    """Returns ``(owner, attribute name, original)`` for ``module:Attribute.path``.

    Raises:
        TargetMissing: naming the part that does not exist.
    """
    module_name, _, path = target.partition(":")
    if not path:
        raise TargetMissing(f"target {target!r} is not of the form module:Attribute.path")
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise TargetMissing(f"module {module_name!r} does not import: {error}") from error
    *parents, attr = path.split(".")
    for part in parents:
        if not hasattr(owner, part):
            raise TargetMissing(f"{module_name} has no {part!r} (looking for {path})")
        owner = getattr(owner, part)
    # a class attribute must be the class's own, or patching it would shadow a base's
    present = attr in vars(owner) if isinstance(owner, type) else hasattr(owner, attr)
    if not present:
        raise TargetMissing(f"{target}: {attr!r} does not exist")
    original = vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)
    if isinstance(original, staticmethod):
        original = original.__func__
    return owner, attr, original


def by_name(name: str) -> Sabotage:
    """The sabotage called ``name``."""
    for sabotage in SABOTAGES:
        if sabotage.name == name:
            return sabotage
    raise KeyError(f"no sabotage {name!r}; known: {[s.name for s in SABOTAGES]}")


class _Tally:
    """A pytest plugin counting outcomes of the test calls (setup errors count as failures)."""

    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0
        self.first_failure = ""

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failed += 1
            self.first_failure = self.first_failure or report.nodeid.split("::", 1)[-1]
        elif report.when == "call" and report.passed:
            self.passed += 1
        elif report.skipped:
            self.skipped += 1


def run_child(name: str) -> int:
    """Applies one sabotage in this process, runs its tests, prints a JSON tally last."""
    import pytest

    sabotage = by_name(name)
    try:
        owner, attr, original = resolve(sabotage.target)
    except TargetMissing as error:
        print(json.dumps({"missing": str(error)}))
        return 0
    setattr(owner, attr, sabotage.patch(original))
    tally = _Tally()
    args = ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *sabotage.tests]
    code = pytest.main(args, plugins=[tally])
    print(json.dumps({"code": int(code), **vars(tally)}))
    return 0


def _verdict(sabotage: Sabotage) -> tuple[str, str, float]:
    start = time.monotonic()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--child", sabotage.name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.monotonic() - start
    lines = proc.stdout.strip().splitlines()
    try:
        tally = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return "error", f"no result (exit {proc.returncode}): {proc.stderr[-1500:]}", seconds
    if "missing" in tally:
        return "missing", tally["missing"], seconds
    if tally["failed"]:
        return "caught", f"by {tally['first_failure']}", seconds
    if tally["code"] not in (0, 1):  # 2 interrupted, 3 internal error, 4 usage, 5 no tests
        return "error", f"pytest exit {tally['code']}: {proc.stdout[-1500:]}", seconds
    if not tally["passed"]:
        return "skipped", f"all {tally['skipped']} test(s) skipped", seconds
    return "survived", f"all {tally['passed']} test(s) passed", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the sabotages and exit")
    parser.add_argument("--only", action="append", default=[], help="run only these (repeatable)")
    parser.add_argument("--jobs", type=int, default=2, help="sabotages run at once (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args.child)
    chosen = [by_name(n) for n in args.only] if args.only else list(SABOTAGES)
    if args.list:
        for s in chosen:
            print(f"{s.name}: {s.what}\n    patch {s.target}\n    tests {' '.join(s.tests)}")
        return 0
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        verdicts = list(pool.map(_verdict, chosen))
    in_ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    bad = {"survived", "missing", "error"} | ({"skipped"} if in_ci else set())
    failures = 0
    for sabotage, (verdict, detail, seconds) in zip(chosen, verdicts, strict=True):
        flag = "FAIL" if verdict in bad else "ok"
        print(f"{flag:4s} {verdict:8s} {sabotage.name:30s} {seconds:5.1f} s  {detail}")
        if verdict == "missing":
            print(f"     the patch target of sabotage {sabotage.name!r} is gone; update it")
        failures += verdict in bad
    caught = sum(v == "caught" for v, _, _ in verdicts)
    elapsed = time.monotonic() - start
    print(f"{caught}/{len(chosen)} sabotages caught in {elapsed:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
