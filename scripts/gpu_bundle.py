"""The offline bundle of ``scripts/gpu_check.py``: wheels for Python 3.12, packed, and Omniglot.

``prepare()`` pins every runtime and test dependency to the version installed in the environment
that runs it (the versions this repository is tested with), except torch and what comes with it,
downloads their CPython 3.12 manylinux x86_64 wheels, unpacks them into one folder, packs that
as ``.whl/site-cp312.tar.xz`` and copies the Omniglot zips beside it. ``dry_run()`` checks the
bundle and resolves the configs of the check. See ``scripts/gpu_check.py`` for the commands.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import slim_tree
from gpu_check import BUNDLE, CARRY, MANIFEST, OMNIGLOT_DIR, ROOT, SITE_TARBALL, WHEEL_DIR, log

CARRY_LIMIT = 64 * 2**20
"""Bytes the device tool carries: the working tree and the carried ignored paths together."""

TOP_LEVEL = [
    *("numpy", "gymnasium[mujoco]", "mujoco", "stable-baselines3", "tensorboard", "PyYAML"),
    *("matplotlib", "pillow", "tqdm", "pytest", "pytest-timeout"),
]
"""pyproject.toml's dependencies without torch, and the test runner the check uses."""

LEFT_OUT = {
    "mujoco-studio": "MuJoCo's interactive viewer (mujoco imports without it)",
    "mujoco-studio-wasm": "the viewer's web build",
    "websockets": "only the viewer needs it",
    "pyopengl": "MuJoCo's EGL/OSMesa rendering; nothing here renders",
    "grpcio": "TensorBoard's server; SummaryWriter needs only protobuf",
}
"""Dependencies deliberately not bundled (about 22 MB of wheels), and why. (pytest 9 imports
pygments at start-up, so it stays.)"""

IN_IMAGE = {
    *("absl-py", "cloudpickle", "contourpy", "cycler", "etils", "fonttools", "imageio"),
    *("iniconfig", "kiwisolver", "markdown", "matplotlib", "numpy", "packaging", "pillow"),
    *("pluggy", "protobuf", "pygments", "pyparsing", "pytest", "pytest-timeout"),
    *("python-dateutil", "pyyaml", "tensorboard", "tensorboard-data-server", "tqdm"),
    *("werkzeug", "zipp"),
}
"""Preinstalled in the device machine's image (its package list, read 2026-11-17), so not
carried: with them the bundle plus a working tree of 24 MiB no longer fits the 64 MiB carry.
The check then runs our code against the image's versions of these (numpy 2.5 there)."""

BUNDLE_PROBE = """
import pytest, numpy, yaml, PIL, tqdm, gymnasium, mujoco, cloudpickle
from matplotlib.figure import Figure
from tensorboard.summary.writer.event_file_writer import EventFileWriter
import envs
env = gymnasium.make("metarl/HalfCheetahVel-v0")
env.reset(seed=0)
env.step(env.action_space.sample())
figure = Figure(layout="constrained")
figure.add_subplot().plot([0, 1])
figure.savefig(__import__("io").BytesIO(), format="png")
print("bundle imports ok:", numpy.__version__, gymnasium.__version__, mujoco.__version__)
"""
"""What the unpacked bundle must do without torch: import, step a MuJoCo task env, draw a PNG."""

ALSO_BUNDLED = {"typing-extensions"}
"""Installed with torch, but bundled too: gymnasium needs a newer one than torch does."""

TARGET_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
"""PEP 508 marker values of the device machine."""

PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
PIP_TARGET += ["--abi", "cp312"]
for _tag in ("manylinux_2_28", "manylinux_2_27", "manylinux_2_17", "manylinux2014"):
    PIP_TARGET += ["--platform", f"{_tag}_x86_64"]
PIP_TARGET += ["--platform", "manylinux1_x86_64", "--platform", "manylinux_2_5_x86_64"]


def _name(text: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(text)


def _wanted(requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**TARGET_ENV, "extra": e}) for e in extras or {""})


def pinned_closure(roots: list[str], skip: set[str]) -> dict[str, str]:
    """Pins (name: installed version) of all that ``roots`` need on the device, minus ``skip``."""
    from importlib.metadata import distribution

    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        key = (_name(req.name), frozenset(req.extras))
        if key[0] in skip or key in seen:
            continue
        seen.add(key)
        dist = distribution(req.name)
        pins[key[0]] = dist.version
        stack += [r for r in map(Requirement, dist.requires or []) if _wanted(r, set(req.extras))]
    return dict(sorted(pins.items()))


def with_torch() -> set[str]:
    """The torch distribution and all it requires: preinstalled beside a CUDA torch."""
    return set(pinned_closure(["torch"], set()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def carry_bytes() -> int:
    """Bytes of the carried bundle paths."""
    total = 0
    for rel in CARRY:
        path = ROOT / rel
        files = [path] if path.is_file() else list(path.rglob("*")) if path.is_dir() else []
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def _install(wheels: list[Path], target: Path) -> None:
    _pip("install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--target", str(target),
         *PIP_TARGET, *map(str, wheels))  # fmt: skip


def prepare() -> int:
    """Downloads, unpacks and packs the wheels, copies Omniglot, writes the manifest."""
    from envs.supervised import ARCHIVE_NAMES, resolve_omniglot_root

    skip = (with_torch() - ALSO_BUNDLED) | set(LEFT_OUT) | IN_IMAGE
    pins = pinned_closure(TOP_LEVEL, skip)
    log(f"{len(pins)} distributions to bundle: " + " ".join(f"{k}=={v}" for k, v in pins.items()))
    shutil.rmtree(WHEEL_DIR, ignore_errors=True)
    WHEEL_DIR.mkdir(parents=True)
    _pip("download", "--quiet", "--no-deps", *PIP_TARGET, "-d", str(WHEEL_DIR),
         *(f"{k}=={v}" for k, v in pins.items()))  # fmt: skip
    wheels = sorted(WHEEL_DIR.glob("*.whl"))
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(scratch) / "site"
        _install(wheels, site)
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with this host's shebang
        log(f"packing {site} into {SITE_TARBALL} (xz; a few minutes)")
        tmp = SITE_TARBALL.with_suffix(".part")
        with open(tmp, "wb") as f:
            tar = subprocess.Popen(
                ["tar", "-C", scratch, "-cf", "-", "site"], stdout=subprocess.PIPE
            )
            subprocess.run(["xz", "-6", "-T2", "-c"], stdin=tar.stdout, stdout=f, check=True)
            if tar.wait() != 0:
                raise RuntimeError("tar failed")
        os.replace(tmp, SITE_TARBALL)
    OMNIGLOT_DIR.mkdir(parents=True, exist_ok=True)
    source = resolve_omniglot_root()
    for name in ARCHIVE_NAMES:
        shutil.copyfile(source / name, OMNIGLOT_DIR / name)
    manifest = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": "cp312 manylinux x86_64",
        "pins": pins,
        "wheels": {w.name: w.stat().st_size for w in wheels},
        "left_out": LEFT_OUT,
        "in_image": sorted(IN_IMAGE),
        "with_torch": sorted(with_torch()),
        "site_tarball": {"bytes": SITE_TARBALL.stat().st_size, "sha256": _sha256(SITE_TARBALL)},
        "omniglot": {n: _sha256(OMNIGLOT_DIR / n) for n in ARCHIVE_NAMES},
        "carry": CARRY,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    return report_size()


def report_size() -> int:
    """Prints the carry's size against the device tool's limit; 1 if it does not fit.

    A tree that fits only with the committed results out of it (``scripts/slim_tree.py``) fits.
    """
    tree, carry = slim_tree.tree_bytes(ROOT), carry_bytes()
    total = tree + carry
    log(
        f"carry {carry / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = "
        f"{total / 2**20:.1f} MiB of {CARRY_LIMIT / 2**20:.0f} MiB"
    )
    if total <= CARRY_LIMIT:
        return 0
    slim = slim_tree.tree_bytes(ROOT, slimmed=True)
    if slim + carry <= CARRY_LIMIT:
        log(
            f"too much with the committed results: run 'python scripts/slim_tree.py' before the "
            f"call (working tree {slim / 2**20:.1f} MiB, {(slim + carry) / 2**20:.1f} MiB in all)"
        )
        return 0
    log("the bundle does NOT fit: leave out more (LEFT_OUT in scripts/gpu_bundle.py)")
    return 1


def check_complete(site: Path, bundled: set[str]) -> list[str]:
    """Requirements in ``site`` that are not bundled, not with torch and not left out."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    allowed = bundled | with_torch() | set(LEFT_OUT) | IN_IMAGE
    extras = {"gymnasium": {"mujoco"}}
    missing = []
    for dist in distributions(path=[str(site)]):
        name = _name(dist.metadata["Name"])
        for req in map(Requirement, dist.requires or []):
            if _wanted(req, extras.get(name, set())) and _name(req.name) not in allowed:
                missing.append(f"{name} needs {req}")
    return missing


def check_bundle(target: str | None, python312: str | None) -> list[str]:
    """Installs the wheels into a scratch folder and checks the packed bundle; returns errors."""
    manifest = json.loads(MANIFEST.read_text())
    errors = []
    wheels = [WHEEL_DIR / name for name in manifest["wheels"]]
    absent = [w.name for w in wheels if not w.is_file()]
    if absent:
        return [f"wheels named in the manifest are missing: {absent}"]
    with tempfile.TemporaryDirectory() as scratch:
        site = Path(target or scratch)
        log(f"installing {len(wheels)} wheels into {site}")
        _install(wheels, site)
        errors += check_complete(site, set(manifest["pins"]))
    if not SITE_TARBALL.is_file():
        errors.append(f"{SITE_TARBALL} is missing")
    elif _sha256(SITE_TARBALL) != manifest["site_tarball"]["sha256"]:
        errors.append(f"{SITE_TARBALL} does not match the manifest's sha256")
    for name, sha in manifest["omniglot"].items():
        if not (OMNIGLOT_DIR / name).is_file() or _sha256(OMNIGLOT_DIR / name) != sha:
            errors.append(f"{OMNIGLOT_DIR / name} is missing or differs from the manifest")
    if report_size():
        errors.append("the carry exceeds the device tool's limit")
    if not errors:
        errors += probe_packed_bundle(python312)
    return errors


def probe_packed_bundle(python312: str | None) -> list[str]:
    """Unpacks the packed bundle and imports it with a Python 3.12 (skipped without one)."""
    python312 = python312 or shutil.which("python3.12")
    version = "none"
    if python312 is not None:
        ask = [python312, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        try:
            version = subprocess.run(ask, capture_output=True, text=True).stdout.strip() or "none"
        except OSError:
            version = "none"
    if version != "3.12":
        log(f"no Python 3.12 (--python312 PATH; {python312} gives {version}): the packed bundle's")
        log("import check is skipped")
        return []
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(["tar", "-C", scratch, "-xJf", str(SITE_TARBALL)], check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([f"{scratch}/site", str(ROOT)])}
        env["MPLBACKEND"] = "Agg"
        proc = subprocess.run(
            [python312, "-c", BUNDLE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True
        )
    if proc.returncode != 0:
        return [f"the packed bundle fails under {python312}:\n{proc.stderr[-1500:]}"]
    log(proc.stdout.strip().splitlines()[-1] + f" (under {python312})")
    return []


def resolve_configs(runs: list[tuple[str, str, list[str]]]) -> list[str]:
    """Loads and validates each (name, config, overrides) with ``run.device=cuda``."""
    from metarl.algorithms import experiment_kind
    from metarl.config import load_config

    errors = []
    for name, config, sets in runs:
        try:
            kind = experiment_kind(config)
            cfg = load_config(kind.CONFIG_CLASS, config, [*sets, "run.device=cuda"])
            if cfg.run.device != "cuda":
                raise ValueError(f"run.device is {cfg.run.device!r}")
            log(f"config ok: {name}: {config} {' '.join(sets)} run.device=cuda")
        except (ValueError, TypeError, FileNotFoundError) as err:
            errors.append(f"{name}: {config}: {err}")
    return errors


def dry_run(
    target: str | None, runs: list[tuple[str, str, list[str]]], python312: str | None = None
) -> int:
    """The checks that need no GPU: the bundle (when prepared) and every config of the check."""
    errors = []
    if MANIFEST.is_file():
        errors += check_bundle(target, python312)
    else:
        log(f"no bundle in {BUNDLE}: wheel install skipped (python scripts/gpu_check.py --prepare)")
    errors += resolve_configs(runs)
    for error in errors:
        log(f"ERROR {error}")
    log("dry run: " + ("ok" if not errors else f"{len(errors)} problem(s)"))
    return 1 if errors else 0
