"""Few-shot Omniglot classification task families.

Data: Lake et al. 2015. Protocols: cbfinn/maml, jakesnell/prototypical-networks,
openai/supervised-reptile.

Three protocols, all over the 1623 characters of ``load_omniglot``:

- ``"maml"`` (Finn et al. 2017; cbfinn/maml ``data_generator.py``; learn2learn's Omniglot
  benchmark): 1100 meta-train / 100 meta-val / 423 meta-test characters; a class is a character,
  and every class of every sampled task gets a uniformly random k·90° rotation, at train and test
  time.
- ``"protonets"`` (Snell et al. 2017, Vinyals et al. 2016 split sizes): 1028 / 172 / 423
  characters; each of the four rotations of a character is a separate class, giving
  4112 / 688 / 1692 classes. Two classes of one task may be rotations of the same character.
- ``"vinyals"`` (Vinyals et al. 2016, the split that ProtoNets, Matching and Relation Networks
  report on): classes as ``"protonets"`` (each rotation a class, 1028 / 172 / 423 characters), but
  the membership is the published one, read from the split files shipped in
  ``envs/supervised/splits/vinyals/`` (jakesnell/prototypical-networks; see
  ``envs.supervised.omniglot_splits``). It is mostly alphabet-disjoint: 12 of the 13 test
  alphabets never appear in train, so it is harder than a random permutation of characters.

How the ``"maml"`` and ``"protonets"`` splits are derived: one fixed permutation of the 1623
character indices, ``numpy.random.default_rng(1).permutation(1623)``; meta-train is its head,
meta-val the next block, and meta-test always its last 423 entries, so the test characters are
identical for both protocols and the train+val characters are the same 1200. This mirrors the
*idea* of cbfinn/maml (``random.seed(1)`` then ``random.shuffle`` of character folders), but the
exact character membership differs from cbfinn/maml, whose order depends on ``os.listdir``. The
``"protonets"`` sizes match the Vinyals split but its membership is a random permutation (all 50
alphabets in every split); ``"vinyals"`` has the published membership.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from envs.supervised._validation import check_episode_args, check_positive_int
from envs.supervised.omniglot_data import (
    IMAGE_SIZE,
    NUM_CHARACTERS,
    NUM_DRAWERS,
    OmniglotData,
    load_omniglot,
)
from envs.supervised.omniglot_splits import vinyals_classes
from envs.supervised.task_batch import TaskBatch

PROTOCOLS: tuple[str, ...] = ("maml", "protonets", "vinyals")
"""Accepted ``protocol`` names."""
SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Accepted ``split`` names."""
SPLIT_SEED = 1
"""Seed of the character permutation that defines every split."""
SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "maml": (1100, 100, 423),
    "protonets": (1028, 172, 423),
    "vinyals": (1028, 172, 423),
}
"""Characters in (train, val, test) for each protocol."""
NUM_ROTATIONS = 4


def omniglot_split_characters(protocol: str, split: str) -> np.ndarray:
    """Return the characters of one split as 0-based indices (character id − 1).

    Args:
        protocol: ``"maml"``, ``"protonets"`` or ``"vinyals"``.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``int64`` ``[characters]`` in permutation order (not sorted), so a prefix is a random
        subset of the split; for ``"vinyals"``, in the order of the split file (grouped by
        alphabet, so a prefix is the first alphabets).

    Raises:
        ValueError: If ``protocol`` or ``split`` is unknown.
    """
    _check_choice("protocol", protocol, PROTOCOLS)
    _check_choice("split", split, SPLITS)
    if protocol == "vinyals":
        characters = vinyals_classes(split).characters
        _, first = np.unique(characters, return_index=True)
        return characters[np.sort(first)]
    num_train, num_val, _ = SPLIT_SIZES[protocol]
    bounds = {
        "train": (0, num_train),
        "val": (num_train, num_train + num_val),
        "test": (num_train + num_val, NUM_CHARACTERS),
    }
    permutation = np.random.default_rng(SPLIT_SEED).permutation(NUM_CHARACTERS)
    start, stop = bounds[split]
    return permutation[start:stop].astype(np.int64)


class OmniglotFamily:
    """N-way K-shot Omniglot tasks sampled by batched indexing of a preloaded image tensor.

    The split's images, in all four rotations, live on ``device`` as ``uint8``
    ``[character, rotation, drawer, 28, 28]``; ``sample`` draws class, rotation and drawer
    indices for the whole batch at once and gathers, with no per-image Python.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        protocol: ``"maml"``, ``"protonets"`` or ``"vinyals"``.
        device: Device of the images and of every sampled batch.
        characters: ``int64`` ``[characters]`` on ``device``: 0-based global index (id − 1) of
            each character of the split, in class order.
        num_classes: Classes available to a task: characters (``"maml"``) or 4 × characters
            (``"protonets"``, class ``c`` is character ``c // 4`` rotated ``c % 4`` quarter turns;
            ``"vinyals"``, class ``c`` is line ``c`` of the split file).
    """

    def __init__(
        self,
        split: str = "train",
        protocol: str = "maml",
        *,
        device: torch.device | str = "cpu",
        root: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        num_characters: int | None = None,
        data: OmniglotData | None = None,
        num_workers: int | None = None,
    ) -> None:
        """Load (or reuse) the images and keep the split's rotated copies on ``device``.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            protocol: ``"maml"``, ``"protonets"`` or ``"vinyals"``; see the module docstring.
            device: Device for the images and the sampled batches.
            root: Data root; see ``resolve_omniglot_root`` (explicit > ``$METARL_OMNIGLOT_ROOT``
                > ``~/.cache/metarl/omniglot``, where ``metarl data omniglot`` downloads).
            cache_dir: Cache directory; see ``default_omniglot_cache_dir``.
            num_characters: Keep only the first ``num_characters`` characters of the split (a
                random subset, see ``omniglot_split_characters``), for fast tests.
            data: Already loaded images to use instead of calling ``load_omniglot``, to share one
                load among several families; ``root``, ``cache_dir``, ``num_workers`` are then
                ignored.
            num_workers: Decoding processes on a cache miss; see ``load_omniglot``.

        Raises:
            ValueError: If ``split``, ``protocol`` or ``num_characters`` is invalid, or ``data``
                does not hold the 1623 characters.
            FileNotFoundError: If an archive is missing.
            OmniglotDataError: If an archive is corrupt or has the wrong contents.
        """
        _check_choice("split", split, SPLITS)
        _check_choice("protocol", protocol, PROTOCOLS)
        characters = omniglot_split_characters(protocol, split)
        if num_characters is not None:
            num_characters = check_positive_int("num_characters", num_characters)
            if num_characters > len(characters):
                raise ValueError(
                    f"num_characters must be <= {len(characters)} (the {protocol} {split} "
                    f"split), got {num_characters}"
                )
            characters = characters[:num_characters]
        if data is None:
            data = load_omniglot(root, cache_dir, num_workers=num_workers)
        elif data.num_characters != NUM_CHARACTERS:
            raise ValueError(
                f"data must hold all {NUM_CHARACTERS} Omniglot characters, got "
                f"{data.num_characters}"
            )
        self.split = split
        self.protocol = protocol
        self.device = torch.device(device)
        index = torch.from_numpy(characters)
        base = data.images[index]  # [C, 20, 28, 28]
        rotated = torch.stack([torch.rot90(base, k, dims=(-2, -1)) for k in range(4)], dim=1)
        self._images = rotated.to(self.device).contiguous()  # [C, 4, 20, 28, 28] uint8, ink 255
        self.characters = index.to(self.device)
        # class -> (row of self._images, rotation); "maml" draws its rotations per task instead
        local, rotation = _class_table(protocol, split, characters)
        self._class_local = torch.from_numpy(local).to(self.device)
        self._class_rotation = torch.from_numpy(rotation).to(self.device)
        self.num_classes = len(characters) * (1 if protocol == "maml" else NUM_ROTATIONS)

    @property
    def num_characters(self) -> int:
        """Characters in this family's split (after ``num_characters`` subsetting)."""
        return self.characters.shape[0]

    def __repr__(self) -> str:
        return (
            f"OmniglotFamily(split={self.split!r}, protocol={self.protocol!r}, "
            f"num_characters={self.num_characters}, num_classes={self.num_classes}, "
            f"device={str(self.device)!r})"
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

        Per task: ``ways`` distinct classes; per class, ``shots + query_shots`` distinct drawers
        (support and query never share a drawing); for ``"maml"`` one random rotation per class,
        shared by its support and query images. Random numbers are drawn on
        ``generator.device`` in a fixed order, so a seed fixes the batch, and a CPU generator gives
        the same batch on every device.

        Args:
            num_tasks: Tasks ``T``.
            ways: Classes per task ``W``.
            shots: Support images per class ``K``.
            query_shots: Query images per class ``Q``.
            generator: Source of randomness.

        Returns:
            A ``TaskBatch`` on ``self.device``: ``support_x`` ``float32`` ``[T, W*K, 1, 28, 28]``
            in ``[0, 1]`` (ink 1), ``support_y`` ``int64`` ``[T, W*K]`` class-major
            (``0,..,0, 1,..,1, ...``), ``query_x``/``query_y`` likewise with ``Q``; ``params``
            (all ``int64``): ``classes`` ``[T, W]`` (class index in the split), ``characters``
            ``[T, W]`` (global 0-based character), ``rotations`` ``[T, W]`` (quarter turns as
            ``torch.rot90(image, k, dims=(-2, -1))``), ``drawers`` ``[T, W, K+Q]`` (0-based,
            support first).

        Raises:
            ValueError: If a count is not a positive int, ``ways`` exceeds ``num_classes`` or
                ``shots + query_shots`` exceeds the 20 drawings.
            TypeError: If ``generator`` is not a ``torch.Generator``.
        """
        num_tasks, ways, shots, query_shots, generator = check_episode_args(
            num_tasks,
            ways,
            shots,
            query_shots,
            generator,
            num_classes=self.num_classes,
            classes_in=f"classes in the {self.protocol} {self.split} split",
            max_per_class=NUM_DRAWERS,
            per_class_in="drawings per character",
        )
        per_class = shots + query_shots
        classes, rotations, drawers = self._draw_indices(num_tasks, ways, per_class, generator)
        local = self._class_local[classes]
        # Row of self._images viewed as [C * 4 * 20, 28 * 28]; a flat index_select gathers
        # faster than advanced indexing over three axes.
        rows = (local[..., None] * NUM_ROTATIONS + rotations[..., None]) * NUM_DRAWERS + drawers
        labels = torch.arange(ways, device=self.device)
        return TaskBatch(
            support_x=self._gather(rows[..., :shots]),
            support_y=labels.repeat_interleave(shots).repeat(num_tasks, 1),
            query_x=self._gather(rows[..., shots:]),
            query_y=labels.repeat_interleave(query_shots).repeat(num_tasks, 1),
            params={
                "classes": classes,
                "characters": self.characters[local],
                "rotations": rotations,
                "drawers": drawers,
            },
        )

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Gather flat ``rows`` ``[T, W, K]`` as ``float32`` ``[T, W*K, 1, 28, 28]`` in [0, 1]."""
        num_tasks, ways, shots = rows.shape
        flat = self._images.view(-1, IMAGE_SIZE * IMAGE_SIZE)
        pixels = flat.index_select(0, rows.reshape(-1))
        images = pixels.view(num_tasks, ways * shots, 1, IMAGE_SIZE, IMAGE_SIZE)
        return images.to(torch.float32).div_(255.0)

    def _draw_indices(
        self, num_tasks: int, ways: int, per_class: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw classes ``[T, W]``, rotations ``[T, W]`` and drawers ``[T, W, K+Q]`` on device.

        Subsets without replacement are the indices of the ``k`` largest of i.i.d. uniforms,
        which is a uniformly random ordered subset.
        """
        source = generator.device
        scores = torch.rand(num_tasks, self.num_classes, generator=generator, device=source)
        classes = scores.topk(ways, dim=1).indices  # [T, W]
        scores = torch.rand(num_tasks, ways, NUM_DRAWERS, generator=generator, device=source)
        drawers = scores.topk(per_class, dim=2).indices  # [T, W, K+Q]
        if self.protocol == "maml":
            rotations = torch.randint(
                NUM_ROTATIONS, (num_tasks, ways), generator=generator, device=source
            )
            rotations = rotations.to(self.device)
        else:
            rotations = self._class_rotation[classes.to(self.device)]
        return classes.to(self.device), rotations, drawers.to(self.device)


def _class_table(
    protocol: str, split: str, characters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's row in ``characters`` and its quarter turns, ``int64`` ``[classes]`` each.

    ``"maml"``: class ``c`` is row ``c`` (its rotation is drawn per task; the table says 0).
    ``"protonets"``: class ``c`` is row ``c // 4`` turned ``c % 4``. ``"vinyals"``: the split
    file's lines, in file order, for the characters kept.
    """
    rows = np.arange(len(characters), dtype=np.int64)
    if protocol == "maml":
        return rows, np.zeros_like(rows)
    if protocol == "protonets":
        turns = np.tile(np.arange(NUM_ROTATIONS, dtype=np.int64), len(rows))
        return np.repeat(rows, NUM_ROTATIONS), turns
    classes = vinyals_classes(split)
    row_of = {int(character): row for row, character in enumerate(characters)}
    kept = [i for i, character in enumerate(classes.characters) if int(character) in row_of]
    local = np.asarray([row_of[int(classes.characters[i])] for i in kept], dtype=np.int64)
    return local, classes.rotations[kept]


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
