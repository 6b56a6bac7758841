"""miniImageNet from a user's folder: the shipped Ravi & Larochelle splits, a synthetic folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from envs.supervised import (
    MiniImageNetDataError,
    MiniImageNetFamily,
    load_miniimagenet_split,
    read_split_csv,
    resolve_miniimagenet_root,
)
from tests.helpers.miniimagenet_fixture import write_synthetic_miniimagenet


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, Path]:
    return write_synthetic_miniimagenet(tmp_path / "mini")


def test_shipped_ravi_splits_have_the_published_sizes_and_disjoint_classes() -> None:
    tables = {s: read_split_csv(s) for s in ("train", "val", "test")}
    sizes = {s: (len(t.classes), len(t.files[0])) for s, t in tables.items()}
    assert sizes == {"train": (64, 600), "val": (16, 600), "test": (20, 600)}
    classes = [set(t.classes) for t in tables.values()]
    assert not (classes[0] & classes[1] or classes[0] & classes[2] or classes[1] & classes[2])
    files = [f for t in tables.values() for group in t.files for f in group]
    assert len(set(files)) == 60000
    assert all(
        f.startswith(c)
        for t in tables.values()
        for c, g in zip(t.classes, t.files, strict=True)
        for f in g
    )


def test_load_resizes_every_image_once_and_reuses_the_cache(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    images, classes = load_miniimagenet_split("val", images_dir.parent, split_dir=split_dir)
    assert images.shape == (6, 8, 84, 84, 3) and images.dtype == np.uint8
    assert classes == tuple(f"n{i:08d}" for i in range(7, 13))
    name = f"{classes[2]}{5:08d}.jpg"
    with Image.open(images_dir / name) as image:
        expected = np.asarray(image.convert("RGB").resize((84, 84), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(images[2, 4], expected)
    caches = list(images_dir.glob("miniimagenet_val_84_*.npy"))
    assert len(caches) == 1  # beside the images: the folder is writable
    (images_dir / name).unlink()  # the cache no longer needs the JPEGs
    again, _ = load_miniimagenet_split("val", images_dir, split_dir=split_dir)
    np.testing.assert_array_equal(again, images)


def test_root_from_the_environment_and_an_explicit_cache_dir(
    folder: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images_dir, split_dir = folder
    monkeypatch.setenv("METARL_MINIIMAGENET_ROOT", str(images_dir.parent))
    assert resolve_miniimagenet_root() == images_dir  # the images/ subfolder
    load_miniimagenet_split("test", split_dir=split_dir, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


def test_family_samples_class_major_tasks_whose_images_match_their_indices(
    folder: tuple[Path, Path],
) -> None:
    images_dir, split_dir = folder
    family = MiniImageNetFamily("train", root=images_dir, split_dir=split_dir)
    assert (family.num_classes, family.images_per_class) == (6, 8)
    batch = family.sample(3, 5, 2, 3, torch.Generator().manual_seed(0))
    assert batch.support_x.shape == (3, 10, 3, 84, 84)
    assert batch.query_x.shape == (3, 15, 3, 84, 84)
    assert batch.support_y.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]] * 3
    raw, _ = load_miniimagenet_split("train", images_dir, split_dir=split_dir)
    classes, picks = batch.params["classes"], batch.params["images"]
    for t in range(3):
        for w in range(5):
            for k in range(2):
                expected = torch.from_numpy(raw[classes[t, w], picks[t, w, k]]).permute(2, 0, 1)
                assert torch.equal(batch.support_x[t, 2 * w + k], expected.float() / 255)
    assert all(len(set(row.tolist())) == 5 for row in classes)
    again = family.sample(3, 5, 2, 3, torch.Generator().manual_seed(0))
    assert torch.equal(again.query_x, batch.query_x)


def test_missing_image_is_a_clear_error(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    (images_dir / "n0000000300000002.jpg").unlink()
    with pytest.raises(MiniImageNetDataError, match=r"lacks 1 of the 48 images of train.csv"):
        load_miniimagenet_split("train", images_dir, split_dir=split_dir)


def test_image_smaller_than_84_is_a_clear_error(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    Image.new("RGB", (60, 84)).save(images_dir / "n0000000100000001.jpg")
    with pytest.raises(MiniImageNetDataError, match=r"n0000000100000001.jpg: 60x84 is smaller"):
        load_miniimagenet_split("train", images_dir, split_dir=split_dir)


def test_unreadable_image_is_a_clear_error(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    (images_dir / "n0000000100000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(MiniImageNetDataError, match="not a readable image"):
        load_miniimagenet_split("train", images_dir, split_dir=split_dir)


def test_folder_not_matching_the_csv_is_a_clear_error(
    folder: tuple[Path, Path], tmp_path: Path
) -> None:
    _, split_dir = folder
    other = tmp_path / "holiday_photos"
    other.mkdir()
    Image.new("RGB", (100, 100)).save(other / "beach.jpg")
    with pytest.raises(MiniImageNetDataError, match="holds none of the 48 images of train.csv"):
        load_miniimagenet_split("train", other, split_dir=split_dir)
    # the shipped CSVs against the synthetic folder: none of the real file names are there
    with pytest.raises(MiniImageNetDataError, match="holds none of the 38400 images"):
        load_miniimagenet_split("train", folder[0])


def test_missing_folder_or_root_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METARL_MINIIMAGENET_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="METARL_MINIIMAGENET_ROOT"):
        load_miniimagenet_split("train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_miniimagenet_split("train", tmp_path / "nowhere")


def test_bad_csv_and_bad_cache_are_clear_errors(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    with pytest.raises(ValueError, match="split must be one of"):
        read_split_csv("trainval", split_dir)
    text = (split_dir / "val.csv").read_text()
    (split_dir / "val.csv").write_text("name,class\n" + text.split("\n", 1)[1])
    with pytest.raises(MiniImageNetDataError, match="header must be 'filename,label'"):
        read_split_csv("val", split_dir)
    lines = (split_dir / "test.csv").read_text().splitlines()
    (split_dir / "test.csv").write_text("\n".join(lines[:-1]) + "\n")  # one class one short
    with pytest.raises(MiniImageNetDataError, match="same number of images"):
        read_split_csv("test", split_dir)
    load_miniimagenet_split("train", images_dir, split_dir=split_dir)
    (cache,) = images_dir.glob("miniimagenet_train_84_*.npy")
    np.save(cache, np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(MiniImageNetDataError, match="delete it to rebuild"):
        load_miniimagenet_split("train", images_dir, split_dir=split_dir)


def test_bad_sample_arguments_raise(folder: tuple[Path, Path]) -> None:
    images_dir, split_dir = folder
    family = MiniImageNetFamily("test", root=images_dir, split_dir=split_dir)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="ways must be <= 6"):
        family.sample(1, 7, 1, 1, gen)
    with pytest.raises(ValueError, match="shots \\+ query_shots must be <= 8"):
        family.sample(1, 5, 5, 4, gen)
    with pytest.raises(ValueError, match="shots"):
        family.sample(1, 5, 0, 1, gen)
