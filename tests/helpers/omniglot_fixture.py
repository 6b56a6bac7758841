"""A tiny synthetic Omniglot: two zips in the upstream layout, with a handful of characters.

Each image is a 105×105 1-bit PNG (white background, black ink) holding an off-centre black
rectangle whose place and size depend on ``(seed, character_id, drawer)``, so rotations and
drawers give visibly different images.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 105
_DATE_TIME = (2021, 11, 15, 17, 30, 36)  # fixed, so the same content gives the same sha256


def synthetic_ink(character_id: int, drawer: int, seed: int = 0) -> np.ndarray:
    """Return the ink mask of one synthetic drawing, ``bool`` ``[105, 105]`` (True = ink)."""
    rng = np.random.default_rng([seed, character_id, drawer])
    top, left = rng.integers(5, 45, size=2)
    height, width = rng.integers(10, 40, size=2)
    ink = np.zeros((SIZE, SIZE), dtype=bool)
    ink[top : top + height, left : left + width] = True
    ink[top : top + 3, left : left + 50] = True  # a bar to one side breaks rotation symmetry
    return ink


def synthetic_png(character_id: int, drawer: int, seed: int = 0) -> bytes:
    """Return the PNG bytes (mode ``"1"``, ink black) of one synthetic drawing."""
    image = Image.fromarray(~synthetic_ink(character_id, drawer, seed))  # white background
    assert image.mode == "1"
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


def write_synthetic_omniglot(
    root: Path,
    characters: tuple[int, int] = (3, 2),
    *,
    drawers: int = 20,
    seed: int = 0,
    stored: bool = False,
    skip: Collection[tuple[int, int]] = (),
    replace: Mapping[str, bytes] | None = None,
    extra: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``images_background.zip`` and ``images_evaluation.zip`` under ``root``.

    Background holds alphabet ``Alpha`` with ids ``1..characters[0]``; evaluation holds ``Beta``
    with the next ``characters[1]`` ids.

    Args:
        root: Folder to write into (created).
        characters: Characters in (background, evaluation).
        drawers: Drawings per character.
        seed: Changes every image (and so both checksums).
        stored: Store members uncompressed, so a flipped byte gives a CRC error, not a zlib one.
        skip: ``(character_id, drawer)`` pairs to leave out.
        replace: Member name → bytes to write instead of the synthetic PNG.
        extra: Member name → bytes of additional members.

    Returns:
        ``root``.
    """
    root.mkdir(parents=True, exist_ok=True)
    replace = replace or {}
    first_id = 1
    for archive, alphabet, count in (
        ("images_background", "Alpha", characters[0]),
        ("images_evaluation", "Beta", characters[1]),
    ):
        members: dict[str, bytes] = {}
        for number in range(1, count + 1):
            character_id = first_id + number - 1
            folder = f"{archive}/{alphabet}/character{number:02d}/"
            members[folder] = b""  # directory entries, as in the upstream zips
            for drawer in range(1, drawers + 1):
                if (character_id, drawer) in skip:
                    continue
                name = f"{folder}{character_id:04d}_{drawer:02d}.png"
                members[name] = (
                    replace[name] if name in replace else synthetic_png(character_id, drawer, seed)
                )
        members.update({k: v for k, v in (extra or {}).items() if k.startswith(archive + "/")})
        _write_zip(root / f"{archive}.zip", members, stored)
        first_id += count
    return root


def member_data_offset(zip_path: Path, name: str) -> int:
    """Return the byte offset of member ``name``'s (compressed) data inside ``zip_path``."""
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo(name)
    with zip_path.open("rb") as stream:
        stream.seek(info.header_offset)
        header = stream.read(30)
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


def _write_zip(path: Path, members: Mapping[str, bytes], stored: bool) -> None:
    compression = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
            info.compress_type = compression
            if name.endswith("/"):
                info.external_attr = 0o40755 << 16 | 0x10  # a directory entry
            archive.writestr(info, members[name])
