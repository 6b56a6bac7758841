"""Few-shot miniImageNet from a user's folder of JPEGs, with the Ravi & Larochelle (2017) splits.

miniImageNet (Vinyals et al. 2016) is 100 ImageNet classes of 600 images each; Ravi & Larochelle
(2017, "Optimization as a Model for Few-Shot Learning") fixed the 64 / 16 / 20 train / val /
test class split that MAML, ProtoNets, Relation Networks, R2-D2 and MetaOptNet report on. Their
split CSVs are shipped in ``envs/supervised/splits/ravi/`` (from GitHub
``jakesnell/prototypical-networks``, MIT licence; see the README there); the images are
ImageNet's and are not: point ``root`` (or ``$METARL_MINIIMAGENET_ROOT``) at a folder holding the
60,000 JPEGs named as in the CSVs (``n0153282900000005.jpg``), directly or in an ``images/``
subfolder, as Ravi & Larochelle's release unpacks.

Each split is decoded once: every image is converted to RGB and resized to 84x84 with Pillow's
LANCZOS filter (as Ravi & Larochelle's and MAML's preprocessing scripts did), and the split is
cached as one ``uint8`` ``.npy`` array ``[class, image, 84, 84, 3]`` beside the images when that
folder is writable, else in ``~/.cache/metarl/miniimagenet``. The cache's name carries a digest
of the CSV, so a different split never reads a stale cache.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import hashlib
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from envs.supervised._validation import check_episode_args
from envs.supervised.task_batch import TaskBatch

__all__ = [
    "MINIIMAGENET_IMAGE_SIZE",
    "MINIIMAGENET_ROOT_ENV_VAR",
    "RAVI_SPLIT_DIR",
    "MiniImageNetDataError",
    "MiniImageNetFamily",
    "load_miniimagenet_split",
    "read_split_csv",
    "resolve_miniimagenet_root",
]

MINIIMAGENET_IMAGE_SIZE = 84
"""Side of the cached square RGB images, in pixels."""
MINIIMAGENET_ROOT_ENV_VAR = "METARL_MINIIMAGENET_ROOT"
"""Environment variable naming the image folder when no ``root`` is given."""
RAVI_SPLIT_DIR = Path(__file__).resolve().parent / "splits" / "ravi"
"""Folder of the shipped ``train.csv``, ``val.csv`` and ``test.csv``."""
_SPLITS = ("train", "val", "test")
_CACHE_VERSION = 1


class MiniImageNetDataError(ValueError):
    """The image folder, a split CSV or a cache does not hold what miniImageNet needs."""


class SplitCSV(NamedTuple):
    """One split CSV: file names grouped by class, classes in order of first appearance."""

    classes: tuple[str, ...]
    files: tuple[tuple[str, ...], ...]
    digest: str


def read_split_csv(split: str, split_dir: str | os.PathLike[str] | None = None) -> SplitCSV:
    """Read ``<split_dir>/<split>.csv`` (header ``filename,label``).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        split_dir: Folder of the CSVs; None reads the shipped Ravi & Larochelle files.

    Returns:
        The classes and their files; every class has the same number of images.

    Raises:
        ValueError: If ``split`` is unknown.
        FileNotFoundError: If the CSV is missing.
        MiniImageNetDataError: If the header, a row or the class sizes are wrong.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    path = Path(split_dir if split_dir is not None else RAVI_SPLIT_DIR) / f"{split}.csv"
    raw = path.read_bytes()
    rows = list(csv.reader(raw.decode("utf-8").splitlines()))
    if not rows or rows[0] != ["filename", "label"]:
        raise MiniImageNetDataError(f"{path}: the header must be 'filename,label'")
    by_class: dict[str, list[str]] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0] or not row[1]:
            raise MiniImageNetDataError(f"{path}:{number}: expected 'filename,label', got {row}")
        by_class.setdefault(row[1], []).append(row[0])
    sizes = {len(files) for files in by_class.values()}
    if len(sizes) != 1:
        raise MiniImageNetDataError(
            f"{path}: every class must have the same number of images, got sizes {sorted(sizes)}"
        )
    return SplitCSV(
        tuple(by_class),
        tuple(tuple(files) for files in by_class.values()),
        hashlib.sha256(raw).hexdigest(),
    )


def _user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "metarl" / "miniimagenet"


def resolve_miniimagenet_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the image folder: ``root``, else ``$METARL_MINIIMAGENET_ROOT``.

    A folder with an ``images/`` subfolder resolves to that subfolder.

    Raises:
        FileNotFoundError: If neither names a folder that exists.
    """
    if root is None:
        root = os.environ.get(MINIIMAGENET_ROOT_ENV_VAR) or None
    if root is None:
        raise FileNotFoundError(
            "miniImageNet images not configured: set task.data_root (or the root argument) or "
            f"${MINIIMAGENET_ROOT_ENV_VAR} to the folder holding the 60,000 JPEGs"
        )
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"miniImageNet image folder {folder} does not exist")
    return folder / "images" if (folder / "images").is_dir() else folder


def load_miniimagenet_split(
    split: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    split_dir: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Load one split as ``uint8`` ``[class, image, 84, 84, 3]``, decoding it once into a cache.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: The image folder; see :func:`resolve_miniimagenet_root`.
        cache_dir: Where the ``.npy`` cache goes; None: the image folder if writable, else
            ``~/.cache/metarl/miniimagenet``.
        split_dir: Folder of the split CSVs (None: the shipped Ravi & Larochelle files).
        num_workers: Decoding threads on a cache miss (None: one per CPU).

    Returns:
        The images and the class labels (WordNet ids) in row order.

    Raises:
        FileNotFoundError: If the folder or the CSV is missing.
        MiniImageNetDataError: If the folder does not hold the CSV's images, an image is smaller
            than 84x84 or unreadable, or a cache has the wrong shape.
    """
    table = read_split_csv(split, split_dir)
    folder = resolve_miniimagenet_root(root)
    if cache_dir is None:
        cache_dir = folder if os.access(folder, os.W_OK) else _user_cache_dir()
    side = MINIIMAGENET_IMAGE_SIZE
    name = f"miniimagenet_{split}_{side}_v{_CACHE_VERSION}_{table.digest[:16]}.npy"
    cache = Path(cache_dir) / name
    shape = (len(table.classes), len(table.files[0]), side, side, 3)
    if cache.is_file():
        images = np.load(cache, allow_pickle=False)
        if images.shape != shape or images.dtype != np.uint8:
            raise MiniImageNetDataError(
                f"cache {cache} holds {images.dtype} {images.shape}, expected uint8 {shape}; "
                "delete it to rebuild"
            )
        return images, table.classes
    images = _decode(folder, table, split, num_workers).reshape(shape)
    with contextlib.suppress(OSError):  # a read-only cache folder only costs a rebuild next time
        _save_atomic(images, cache)
    return images, table.classes


def _decode(folder: Path, table: SplitCSV, split: str, num_workers: int | None) -> np.ndarray:
    files = [folder / f for class_files in table.files for f in class_files]
    missing = [p.name for p in files if not p.is_file()]
    if len(missing) == len(files):
        raise MiniImageNetDataError(
            f"{folder} holds none of the {len(files)} images of {split}.csv (e.g. "
            f"{files[0].name}): is it the miniImageNet image folder?"
        )
    if missing:
        raise MiniImageNetDataError(
            f"{folder} lacks {len(missing)} of the {len(files)} images of {split}.csv, e.g. "
            f"{missing[:3]}"
        )
    workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        return np.stack(list(pool.map(_load_image, files)))


def _load_image(path: Path) -> np.ndarray:
    side = MINIIMAGENET_IMAGE_SIZE
    try:
        with Image.open(path) as image:
            if min(image.size) < side:
                raise MiniImageNetDataError(
                    f"{path}: {image.size[0]}x{image.size[1]} is smaller than {side}x{side}; "
                    "miniImageNet images are at least that large"
                )
            resized = image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)
            return np.asarray(resized, dtype=np.uint8)
    except (OSError, SyntaxError) as error:  # PIL's UnidentifiedImageError is an OSError
        raise MiniImageNetDataError(f"{path}: not a readable image ({error})") from error


def _save_atomic(array: np.ndarray, path: Path) -> None:
    """Save ``array`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            np.save(stream, array, allow_pickle=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class MiniImageNetFamily:
    """N-way K-shot miniImageNet tasks sampled by batched indexing of a preloaded tensor.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        device: Device of the images and of every sampled batch.
        classes: The split's class labels (WordNet ids), in class-index order.
        num_classes: Classes available to a task.
        images_per_class: Images of each class (600 in the Ravi & Larochelle splits).
    """

    def __init__(
        self,
        split: str = "train",
        *,
        device: torch.device | str = "cpu",
        root: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        split_dir: str | os.PathLike[str] | None = None,
        num_workers: int | None = None,
    ) -> None:
        """Load (decoding once) the split's images and keep them on ``device`` as ``uint8``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            device: Device for the images and the sampled batches.
            root: The image folder; see :func:`resolve_miniimagenet_root`.
            cache_dir: See :func:`load_miniimagenet_split`.
            split_dir: Folder of the split CSVs (None: the shipped Ravi & Larochelle files).
            num_workers: Decoding threads on a cache miss.

        Raises:
            See :func:`load_miniimagenet_split`.
        """
        images, classes = load_miniimagenet_split(
            split, root, cache_dir=cache_dir, split_dir=split_dir, num_workers=num_workers
        )
        self.split = split
        self.device = torch.device(device)
        self.classes = classes
        self.num_classes, self.images_per_class = images.shape[:2]
        # [C, N, 3, 84, 84]: channels first, as the conv4 backbone reads them
        self._images = torch.from_numpy(images).permute(0, 1, 4, 2, 3).contiguous().to(self.device)

    def __repr__(self) -> str:
        return (
            f"MiniImageNetFamily(split={self.split!r}, num_classes={self.num_classes}, "
            f"images_per_class={self.images_per_class}, device={str(self.device)!r})"
        )

    def sample(
        self,
        num_tasks: int,
        ways: int,
        shots: int,
        query_shots: int,
        generator: torch.Generator,
    ) -> TaskBatch:
        """Sample ``num_tasks`` ``ways``-way tasks with ``shots`` support and ``query_shots`` query.

        Args:
            num_tasks: Tasks ``T``.
            ways: Classes per task ``W``.
            shots: Support images per class ``K``.
            query_shots: Query images per class ``Q``.
            generator: Source of randomness (a CPU generator gives the same batch on any device).

        Returns:
            A ``TaskBatch`` on ``self.device``: ``support_x`` ``float32``
            ``[T, W*K, 3, 84, 84]`` in ``[0, 1]``, ``support_y`` ``int64`` ``[T, W*K]``
            class-major, ``query_x``/``query_y`` likewise with ``Q``; ``params``: ``classes``
            ``[T, W]`` and ``images`` ``[T, W, K+Q]`` (indices within the class, support first).

        Raises:
            ValueError: If a count is not a positive int or exceeds the classes or images.
            TypeError: If ``generator`` is not a ``torch.Generator``.
        """
        num_tasks, ways, shots, query_shots, generator = check_episode_args(
            num_tasks,
            ways,
            shots,
            query_shots,
            generator,
            num_classes=self.num_classes,
            classes_in=f"classes in the {self.split} split",
            max_per_class=self.images_per_class,
            per_class_in="images per class",
        )
        per_class = shots + query_shots
        source = generator.device
        scores = torch.rand(num_tasks, self.num_classes, generator=generator, device=source)
        classes = scores.topk(ways, dim=1).indices.to(self.device)  # [T, W]
        scores = torch.rand(
            num_tasks, ways, self.images_per_class, generator=generator, device=source
        )
        picks = scores.topk(per_class, dim=2).indices.to(self.device)  # [T, W, K+Q]
        rows = classes.unsqueeze(-1) * self.images_per_class + picks
        labels = torch.arange(ways, device=self.device)
        return TaskBatch(
            support_x=self._gather(rows[..., :shots]),
            support_y=labels.repeat_interleave(shots).repeat(num_tasks, 1),
            query_x=self._gather(rows[..., shots:]),
            query_y=labels.repeat_interleave(query_shots).repeat(num_tasks, 1),
            params={"classes": classes, "images": picks},
        )

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Gather flat ``rows`` ``[T, W, K]`` as ``float32`` ``[T, W*K, 3, 84, 84]`` in [0, 1]."""
        num_tasks, ways, shots = rows.shape
        flat = self._images.view(-1, *self._images.shape[2:])
        images = flat.index_select(0, rows.reshape(-1)).view(num_tasks, ways * shots, 3, 84, 84)
        return images.to(torch.float32).div_(255.0)
