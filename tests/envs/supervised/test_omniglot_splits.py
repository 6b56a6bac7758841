"""The Vinyals et al. (2016) Omniglot class splits shipped in the package."""

from __future__ import annotations

import pytest
import torch

from envs.supervised import OmniglotData, OmniglotFamily, omniglot_split_characters
from envs.supervised.omniglot_splits import ALPHABET_IDS, VINYALS_SPLIT_DIR, vinyals_classes

SPLITS = ("train", "val", "test")


def _lines(split: str) -> list[str]:
    return (VINYALS_SPLIT_DIR / f"{split}.txt").read_text(encoding="ascii").splitlines()


def test_split_sizes_match_the_files() -> None:
    for split, classes, characters in zip(SPLITS, (4112, 688, 1692), (1028, 172, 423), strict=True):
        assert len(_lines(split)) == classes
        parsed = vinyals_classes(split)
        assert len(parsed.characters) == len(parsed.rotations) == classes
        assert len(omniglot_split_characters("vinyals", split)) == characters
        # all four rotations of every character are classes of the same split
        expected = omniglot_split_characters("vinyals", split).tolist() * 4
        assert sorted(parsed.characters.tolist()) == sorted(expected)


def test_splits_are_disjoint_and_cover_every_character() -> None:
    characters = [set(omniglot_split_characters("vinyals", s).tolist()) for s in SPLITS]
    assert not characters[0] & characters[1]
    assert not characters[0] & characters[2]
    assert not characters[1] & characters[2]
    assert set().union(*characters) == set(range(1623))


def test_twelve_of_the_thirteen_test_alphabets_are_absent_from_train() -> None:
    alphabets = {s: set(vinyals_classes(s).alphabets) for s in SPLITS}
    assert len(alphabets["test"]) == 13
    assert alphabets["test"] & alphabets["train"] == {"Gurmukhi"}
    assert not alphabets["val"] & alphabets["train"]
    assert len(set().union(*alphabets.values())) == 50


def test_a_line_maps_to_its_upstream_character_id_and_rotation() -> None:
    # Angelic is ids 965-984 (images_evaluation); Latin ids 683-708 (images_background)
    lines = _lines("train")
    classes = vinyals_classes("train")
    first = lines.index("Angelic/character01/rot000")
    assert (classes.characters[first], classes.rotations[first]) == (964, 0)
    turned = lines.index("Angelic/character20/rot270")
    assert (classes.characters[turned], classes.rotations[turned]) == (983, 3)


def test_bad_split_raises() -> None:
    with pytest.raises(ValueError, match="split"):
        vinyals_classes("trainval")
    with pytest.raises(ValueError, match="split"):
        omniglot_split_characters("vinyals", "all")


# --- on the real data ---------------------------------------------------------------------------

OMNIGLOT = pytest.mark.xdist_group("omniglot")  # one worker builds the real cache once


@OMNIGLOT
def test_alphabet_id_ranges_match_the_archives(omniglot_data: OmniglotData) -> None:
    for index, name in enumerate(omniglot_data.alphabets):
        ids = (omniglot_data.alphabet_index == index).nonzero().flatten() + 1
        first, count = ALPHABET_IDS[name.split("/", 1)[1]]
        assert ids.tolist() == list(range(first, first + count)), name


@OMNIGLOT
def test_vinyals_family_samples_its_split_classes(omniglot_data: OmniglotData) -> None:
    family = OmniglotFamily("test", "vinyals", data=omniglot_data)
    assert family.num_classes == 1692
    batch = family.sample(6, 5, 1, 2, torch.Generator().manual_seed(0))
    classes = vinyals_classes("test")
    picked = batch.params["classes"]
    assert torch.equal(batch.params["characters"], torch.from_numpy(classes.characters)[picked])
    assert torch.equal(batch.params["rotations"], torch.from_numpy(classes.rotations)[picked])
    drawers = batch.params["drawers"]
    for t in range(6):
        for w in range(5):
            image = omniglot_data.images[batch.params["characters"][t, w], drawers[t, w, 0]]
            turned = torch.rot90(image, int(batch.params["rotations"][t, w]), dims=(-2, -1))
            assert torch.equal(batch.support_x[t, w, 0], turned.float() / 255)


@OMNIGLOT
def test_vinyals_num_characters_keeps_all_rotations_of_a_prefix(
    omniglot_data: OmniglotData,
) -> None:
    family = OmniglotFamily("train", "vinyals", data=omniglot_data, num_characters=10)
    assert family.num_classes == 40
    expected = omniglot_split_characters("vinyals", "train")[:10]
    assert family.characters.tolist() == expected.tolist()
    batch = family.sample(20, 5, 1, 1, torch.Generator().manual_seed(1))
    assert set(batch.params["characters"].flatten().tolist()) <= set(expected.tolist())
