"""Take the committed results out of the working tree before a device call, and put them back.

The device tool sends the working tree with the carried paths, 64 MiB in all. The committed
``results/`` and ``runs-in-progress/`` (checkpoints, mostly) and the Omniglot zips of the carry do
not fit together, and a call needs neither the results nor the saved runs, except
``results/reproduce.yaml`` (the rows' commands), ``runs-in-progress/gpu_plan.txt`` and the folders
a call resumes from (``--keep``)::

    python scripts/slim_tree.py --keep results/maml-omniglot_5w1s   # before the call
    python scripts/slim_tree.py --restore                           # after it

Only committed, unchanged files are removed (``git checkout`` brings them back); with changes
under those folders it refuses and removes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("results", "runs-in-progress")
ALWAYS_KEPT = ("results/reproduce.yaml", "runs-in-progress/gpu_plan.txt")
LIMIT = 64 << 20


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def _removed(name: str, keep: list[str]) -> bool:
    """Whether :func:`slim` takes ``name`` (a path relative to the root) out of the tree."""
    kept = [k.rstrip("/") for k in (*ALWAYS_KEPT, *keep)]
    inside = name.startswith(tuple(f + "/" for f in FOLDERS))
    return inside and not any(name == k or name.startswith(k + "/") for k in kept)


def slim(root: Path, keep: list[str]) -> tuple[int, int]:
    """Removes the committed files under ``FOLDERS`` but the kept ones; returns (files, bytes)."""
    changed = _git(root, "status", "--porcelain", "--", *FOLDERS).strip()
    if changed:
        raise SystemExit(
            "slim_tree: uncommitted changes under results/ or runs-in-progress/; commit or stash "
            f"them first (nothing was removed):\n{changed}"
        )
    files = _git(root, "ls-files", "-z", "--", *FOLDERS).split("\0")
    gone = [f for f in files if _removed(f, keep)]
    size = 0
    for name in gone:
        path = root / name
        if path.is_file():
            size += path.stat().st_size
            path.unlink()
    return len(gone), size


def tree_bytes(root: Path, slimmed: bool = False) -> int:
    """Bytes of the tree the device tool sends: tracked files present, untracked not ignored.

    ``slimmed``: as it would be after :func:`slim` with no ``--keep``.
    """
    names = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    if slimmed:
        names = [n for n in names if not _removed(n, [])]
    return sum((root / n).stat().st_size for n in names if n and (root / n).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", nargs="*", default=[], help="paths under the folders to keep")
    parser.add_argument("--restore", action="store_true", help="git checkout the folders")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.restore:
        _git(args.root, "checkout", "--", *FOLDERS)
        print(
            f"restored {', '.join(FOLDERS)}; working tree {tree_bytes(args.root) / 2**20:.1f} MiB"
        )
        return 0
    count, size = slim(args.root, args.keep)
    left = tree_bytes(args.root)
    print(
        f"removed {count} committed files ({size / 2**20:.1f} MiB); working tree now "
        f"{left / 2**20:.1f} MiB, leaving {(LIMIT - left) / 2**20:.1f} MiB of the 64 MiB for the "
        "carry; 'python scripts/slim_tree.py --restore' puts them back"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
