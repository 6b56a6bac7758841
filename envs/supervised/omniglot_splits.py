"""The Vinyals et al. (2016) Omniglot class splits, read from the copies shipped in the package.

Vinyals et al. 2016 ("Matching Networks for One Shot Learning") split Omniglot by class, mostly
by whole alphabets; Snell et al. 2017 (Prototypical Networks) released the split files, which
``envs/supervised/splits/vinyals/`` holds verbatim (GitHub ``jakesnell/prototypical-networks``,
commit ``c9bb4d2``, ``data/omniglot/splits/vinyals/``, MIT licence; see the README there). Each
line names one class, ``<Alphabet>/characterNN/rotDDD``: the four rotations of a character are
separate classes, and all four of a character are in the same split. 12 of the 13 test
alphabets never appear in train, unlike a random permutation of characters.

A line maps to a global character id through the upstream id ranges of the alphabets
(``characterNN`` is the ``NN``-th id of its alphabet) and to ``k = DDD / 90`` quarter turns.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "ALPHABET_IDS",
    "VINYALS_SPLIT_DIR",
    "VinyalsClasses",
    "vinyals_classes",
]

VINYALS_SPLIT_DIR = Path(__file__).resolve().parent / "splits" / "vinyals"
"""Folder of the shipped ``train.txt``, ``val.txt`` and ``test.txt``."""

ALPHABET_IDS: dict[str, tuple[int, int]] = {
    "Arcadian": (1, 26),
    "Armenian": (27, 41),
    "Asomtavruli_(Georgian)": (68, 40),
    "Balinese": (108, 24),
    "Bengali": (132, 46),
    "Blackfoot_(Canadian_Aboriginal_Syllabics)": (178, 14),
    "Braille": (192, 26),
    "Cyrillic": (218, 33),
    "Early_Aramaic": (251, 22),
    "Syriac_(Estrangelo)": (273, 23),
    "Anglo-Saxon_Futhorc": (296, 29),
    "Futurama": (325, 26),
    "Grantha": (351, 43),
    "Greek": (394, 24),
    "Gujarati": (418, 48),
    "Hebrew": (466, 22),
    "Japanese_(hiragana)": (488, 52),
    "Inuktitut_(Canadian_Aboriginal_Syllabics)": (540, 16),
    "Malay_(Jawi_-_Arabic)": (556, 40),
    "Japanese_(katakana)": (596, 47),
    "Korean": (643, 40),
    "Latin": (683, 26),
    "Alphabet_of_the_Magi": (709, 20),
    "Mkhedruli_(Georgian)": (729, 41),
    "Burmese_(Myanmar)": (770, 34),
    "N_Ko": (804, 33),
    "Ojibwe_(Canadian_Aboriginal_Syllabics)": (837, 14),
    "Sanskrit": (851, 42),
    "Tagalog": (893, 17),
    "Tifinagh": (910, 55),
    "Angelic": (965, 20),
    "Atemayar_Qelisayer": (985, 26),
    "Atlantean": (1011, 26),
    "Aurek-Besh": (1037, 26),
    "Avesta": (1063, 26),
    "Ge_ez": (1089, 26),
    "Glagolitic": (1115, 45),
    "Gurmukhi": (1160, 45),
    "Kannada": (1205, 41),
    "Keble": (1246, 26),
    "Malayalam": (1272, 47),
    "Manipuri": (1319, 40),
    "Mongolian": (1359, 30),
    "Old_Church_Slavonic_(Cyrillic)": (1389, 45),
    "Oriya": (1434, 46),
    "Syriac_(Serto)": (1480, 23),
    "Sylheti": (1503, 28),
    "Tengwar": (1531, 25),
    "Tibetan": (1556, 42),
    "ULOG": (1598, 26),
}
"""Alphabet -> (first character id, characters), the id ranges of the upstream archives
(``images_background`` ids 1-964, ``images_evaluation`` 965-1623)."""

_ROTATIONS = {"rot000": 0, "rot090": 1, "rot180": 2, "rot270": 3}


class VinyalsClasses(NamedTuple):
    """The classes of one Vinyals split, in file order.

    Attributes:
        characters: ``int64`` ``[class]``: 0-based global character (id − 1) of each class.
        rotations: ``int64`` ``[class]``: quarter turns (0-3) of each class.
        alphabets: Alphabet name of each class.
    """

    characters: np.ndarray
    rotations: np.ndarray
    alphabets: tuple[str, ...]


def vinyals_classes(split: str) -> VinyalsClasses:
    """Read the classes of ``split`` from the shipped Vinyals split file.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        The split's classes in file order (4112 / 688 / 1692).

    Raises:
        ValueError: If ``split`` is unknown or a line of the file is malformed.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
    classes = _read(split)
    return VinyalsClasses(classes.characters.copy(), classes.rotations.copy(), classes.alphabets)


@functools.cache
def _read(split: str) -> VinyalsClasses:
    path = VINYALS_SPLIT_DIR / f"{split}.txt"
    characters, rotations, alphabets = [], [], []
    for number, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        parts = line.split("/")
        if len(parts) != 3 or parts[0] not in ALPHABET_IDS or parts[2] not in _ROTATIONS:
            raise ValueError(
                f"{path}:{number}: expected <Alphabet>/characterNN/rotDDD, got {line!r}"
            )
        first, count = ALPHABET_IDS[parts[0]]
        index = int(parts[1].removeprefix("character"))
        if not 1 <= index <= count:
            raise ValueError(f"{path}:{number}: {parts[0]} has {count} characters, got {line!r}")
        characters.append(first + index - 2)  # 0-based: id - 1
        rotations.append(_ROTATIONS[parts[2]])
        alphabets.append(parts[0])
    return VinyalsClasses(
        np.asarray(characters, dtype=np.int64),
        np.asarray(rotations, dtype=np.int64),
        tuple(alphabets),
    )
