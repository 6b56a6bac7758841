"""Omniglot splits and few-shot task sampling on the real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from envs.supervised import (
    NUM_CHARACTERS,
    OmniglotData,
    OmniglotFamily,
    TaskBatch,
    load_omniglot,
    omniglot_split_characters,
)
from tests.helpers.omniglot_fixture import write_synthetic_omniglot

pytestmark = pytest.mark.xdist_group("omniglot")  # one worker builds the real cache once


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _expected_images(data: OmniglotData, batch: TaskBatch, shots: int) -> tuple[torch.Tensor, ...]:
    """Rebuild support/query images from ``params`` with a plain loop over tasks and classes."""
    characters, rotations = batch.params["characters"], batch.params["rotations"]
    drawers = batch.params["drawers"]
    support, query = [], []
    for task in range(batch.num_tasks):
        for way in range(characters.shape[1]):
            base = data.images[characters[task, way], drawers[task, way]]  # [K+Q, 28, 28]
            turned = torch.rot90(base, int(rotations[task, way]), dims=(-2, -1)).float() / 255
            support.append(turned[:shots])
            query.append(turned[shots:])
    num_tasks = batch.num_tasks
    return (
        torch.stack(support).reshape(num_tasks, -1, 1, 28, 28),
        torch.stack(query).reshape(num_tasks, -1, 1, 28, 28),
    )


# --- splits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "sizes"), [("maml", (1100, 100, 423)), ("protonets", (1028, 172, 423))]
)
def test_split_sizes_are_disjoint_and_cover_every_character(
    protocol: str, sizes: tuple[int, int, int]
) -> None:
    splits = [omniglot_split_characters(protocol, s) for s in ("train", "val", "test")]
    assert tuple(len(split) for split in splits) == sizes
    union = np.concatenate(splits)
    assert np.array_equal(np.sort(union), np.arange(NUM_CHARACTERS))  # disjoint and complete


def test_splits_are_deterministic_and_share_the_test_characters() -> None:
    assert np.array_equal(
        omniglot_split_characters("maml", "train"), omniglot_split_characters("maml", "train")
    )
    assert np.array_equal(
        omniglot_split_characters("maml", "test"), omniglot_split_characters("protonets", "test")
    )
    maml_seen = np.concatenate([omniglot_split_characters("maml", s) for s in ("train", "val")])
    protonets_seen = np.concatenate(
        [omniglot_split_characters("protonets", s) for s in ("train", "val")]
    )
    assert set(maml_seen.tolist()) == set(protonets_seen.tolist())


@pytest.mark.parametrize(
    ("protocol", "classes"), [("maml", (1100, 100, 423)), ("protonets", (4112, 688, 1692))]
)
def test_family_class_counts(
    omniglot_data: OmniglotData, protocol: str, classes: tuple[int, int, int]
) -> None:
    counts = tuple(
        OmniglotFamily(split, protocol, data=omniglot_data).num_classes
        for split in ("train", "val", "test")
    )
    assert counts == classes


# --- sampled batches -----------------------------------------------------------------------------


def test_batch_shapes_dtypes_and_class_major_labels(maml_train: OmniglotFamily) -> None:
    batch = maml_train.sample(4, 5, 2, 3, _generator())
    assert batch.support_x.shape == (4, 10, 1, 28, 28)
    assert batch.query_x.shape == (4, 15, 1, 28, 28)
    assert batch.support_x.dtype == batch.query_x.dtype == torch.float32
    assert batch.support_y.dtype == batch.query_y.dtype == torch.int64
    assert batch.support_y.tolist() == [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4]] * 4
    assert batch.query_y.tolist() == [[c for c in range(5) for _ in range(3)]] * 4
    assert 0.0 <= batch.support_x.min() and batch.support_x.max() <= 1.0
    assert batch.support_x.mean() < 0.3  # ink = 1 on a dark background
    assert {k: tuple(v.shape) for k, v in batch.params.items()} == {
        "classes": (4, 5),
        "characters": (4, 5),
        "rotations": (4, 5),
        "drawers": (4, 5, 5),
    }


@pytest.mark.parametrize("family_name", ["maml_train", "protonets_train"])
def test_images_match_their_labels_characters_rotations_and_drawers(
    request: pytest.FixtureRequest, omniglot_data: OmniglotData, family_name: str
) -> None:
    family: OmniglotFamily = request.getfixturevalue(family_name)
    batch = family.sample(8, 5, 2, 3, _generator(1))
    support, query = _expected_images(omniglot_data, batch, shots=2)
    torch.testing.assert_close(batch.support_x, support, rtol=0, atol=0)
    torch.testing.assert_close(batch.query_x, query, rtol=0, atol=0)


def test_classes_and_drawers_are_drawn_without_replacement(maml_train: OmniglotFamily) -> None:
    batch = maml_train.sample(16, 20, 5, 15, _generator(2))
    classes, drawers = batch.params["classes"], batch.params["drawers"]
    assert all(len(set(row.tolist())) == 20 for row in classes)
    assert torch.equal(drawers.sort(dim=-1).values, torch.arange(20).expand(16, 20, 20))
    assert torch.equal(batch.params["characters"], maml_train.characters[classes])


def test_maml_protocol_rotates_each_class_at_random(
    maml_train: OmniglotFamily, omniglot_data: OmniglotData
) -> None:
    batch = maml_train.sample(32, 5, 1, 1, _generator(3))
    rotations = batch.params["rotations"]
    assert set(rotations.unique().tolist()) == {0, 1, 2, 3}
    drawers = batch.params["drawers"][..., 0]
    upright = omniglot_data.images[batch.params["characters"], drawers].float() / 255
    same_as_upright = (batch.support_x[:, :, 0] == upright).flatten(2).all(-1)  # [32, 5]
    assert same_as_upright[rotations == 0].all()
    assert (~same_as_upright[rotations != 0]).float().mean() > 0.9


def test_test_split_is_rotated_too(omniglot_data: OmniglotData) -> None:
    family = OmniglotFamily("test", "maml", data=omniglot_data)
    batch = family.sample(32, 5, 1, 1, _generator(4))
    assert set(batch.params["rotations"].unique().tolist()) == {0, 1, 2, 3}
    test_characters = set(omniglot_split_characters("maml", "test").tolist())
    assert set(batch.params["characters"].flatten().tolist()) <= test_characters


def test_protonets_classes_are_character_rotation_pairs(protonets_train: OmniglotFamily) -> None:
    batch = protonets_train.sample(8, 60, 1, 1, _generator(5))
    classes = batch.params["classes"]
    assert torch.equal(batch.params["rotations"], classes % 4)
    assert torch.equal(batch.params["characters"], protonets_train.characters[classes // 4])
    train_characters = set(omniglot_split_characters("protonets", "train").tolist())
    assert set(batch.params["characters"].flatten().tolist()) <= train_characters


def test_same_seed_same_batch_and_new_seed_different(maml_train: OmniglotFamily) -> None:
    first = maml_train.sample(4, 5, 1, 1, _generator(7))
    second = maml_train.sample(4, 5, 1, 1, _generator(7))
    other = maml_train.sample(4, 5, 1, 1, _generator(8))
    assert torch.equal(first.support_x, second.support_x)
    assert torch.equal(first.query_x, second.query_x)
    assert all(torch.equal(first.params[k], second.params[k]) for k in first.params)
    assert not torch.equal(first.params["classes"], other.params["classes"])


def test_num_characters_keeps_a_prefix_of_the_split(omniglot_data: OmniglotData) -> None:
    tiny = OmniglotFamily("train", "maml", data=omniglot_data, num_characters=10)
    assert tiny.num_characters == tiny.num_classes == 10
    expected = omniglot_split_characters("maml", "train")[:10]
    assert tiny.characters.tolist() == expected.tolist()
    batch = tiny.sample(3, 10, 1, 1, _generator())
    assert all(sorted(row.tolist()) == list(range(10)) for row in batch.params["classes"])
    protonets = OmniglotFamily("val", "protonets", data=omniglot_data, num_characters=10)
    assert protonets.num_classes == 40


def test_family_loads_through_the_cache(
    omniglot_root: Path, omniglot_cache_dir: Path, omniglot_data: OmniglotData
) -> None:
    family = OmniglotFamily("val", root=omniglot_root, cache_dir=omniglot_cache_dir)
    reference = OmniglotFamily("val", data=omniglot_data)
    assert torch.equal(family._images, reference._images)
    assert "split='val'" in repr(family)


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 5, 1, 1), "num_tasks must be a positive int, got 0"),
        ((2, 0, 1, 1), "ways must be a positive int, got 0"),
        ((2, 5, -1, 1), "shots must be a positive int, got -1"),
        ((2, 5, 1, 1.0), r"query_shots must be a positive int, got 1.0 \(float\)"),
        ((2, 11, 1, 1), r"ways must be <= 10 \(classes in the maml train split\), got 11"),
        ((2, 5, 15, 6), "shots \\+ query_shots must be <= 20 .* got 15 \\+ 6 = 21"),
    ],
)
def test_bad_sample_arguments_raise(
    omniglot_data: OmniglotData, args: tuple[Any, Any, Any, Any], match: str
) -> None:
    tiny = OmniglotFamily("train", data=omniglot_data, num_characters=10)
    with pytest.raises(ValueError, match=match):
        tiny.sample(*args, _generator())


def test_bad_generator_raises(maml_train: OmniglotFamily) -> None:
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        maml_train.sample(1, 5, 1, 1, np.random.default_rng(0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "training"}, r"split must be one of \('train', 'val', 'test'\), got 'training'"),
        ({"protocol": "reptile"}, r"protocol must be one of \('maml', 'protonets', 'vinyals'\)"),
        ({"num_characters": 101, "split": "val"}, r"num_characters must be <= 100 .*got 101"),
        ({"num_characters": 0}, "num_characters must be a positive int, got 0"),
    ],
)
def test_bad_family_arguments_raise(
    omniglot_data: OmniglotData, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        OmniglotFamily(data=omniglot_data, **kwargs)  # type: ignore[arg-type]


def test_family_rejects_data_without_all_characters(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    small = load_omniglot(root, tmp_path / "cache", num_workers=0, expected_characters=None)
    with pytest.raises(ValueError, match="data must hold all 1623 Omniglot characters, got 5"):
        OmniglotFamily(data=small)
