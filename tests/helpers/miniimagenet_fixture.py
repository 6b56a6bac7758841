"""A tiny synthetic miniImageNet folder: JPEGs and split CSVs in the layout of the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_synthetic_miniimagenet(
    root: Path,
    *,
    classes_per_split: int = 6,
    images_per_class: int = 8,
    size: tuple[int, int] = (100, 90),
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``root/images/*.jpg`` and ``root/splits/{train,val,test}.csv``.

    Each class is a random colour plus noise; file names and labels follow the Ravi & Larochelle
    CSVs (``n0000000100000003.jpg,n00000001``). Images are ``size`` (width, height), so loading
    resizes them to 84x84.

    Returns:
        The image folder and the split folder.
    """
    rng = np.random.default_rng(seed)
    images, splits = root / "images", root / "splits"
    images.mkdir(parents=True, exist_ok=True)
    splits.mkdir(parents=True, exist_ok=True)
    label = 0
    for split in ("train", "val", "test"):
        lines = ["filename,label"]
        for _ in range(classes_per_split):
            label += 1
            wnid = f"n{label:08d}"
            colour = rng.integers(0, 256, size=3)
            for index in range(1, images_per_class + 1):
                noise = rng.integers(-40, 41, size=(size[1], size[0], 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                name = f"{wnid}{index:08d}.jpg"
                Image.fromarray(pixels).save(images / name, quality=95)
                lines.append(f"{name},{wnid}")
        (splits / f"{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return images, splits
