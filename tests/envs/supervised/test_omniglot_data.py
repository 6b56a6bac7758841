"""Loading, caching and validating the Omniglot archives (real data and a synthetic twin)."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from envs.supervised import (
    ARCHIVE_NAMES,
    ROOT_ENV_VAR,
    OmniglotData,
    OmniglotDataError,
    default_omniglot_cache_dir,
    load_omniglot,
    resolve_omniglot_root,
)
from envs.supervised import omniglot_data as module
from tests.helpers.omniglot_fixture import (
    member_data_offset,
    synthetic_png,
    write_synthetic_omniglot,
)

pytestmark = pytest.mark.xdist_group("omniglot")  # one worker builds the real cache once


def _reference_thumbnail(png: bytes) -> np.ndarray:
    """A direct Pillow decode: grayscale, LANCZOS to 28×28, inverted (ink = 255)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    return 255 - np.asarray(image.resize((28, 28), Image.Resampling.LANCZOS))


def _load_synthetic(root: Path, cache_dir: Path) -> OmniglotData:
    return load_omniglot(root, cache_dir, num_workers=0, expected_characters=None)


@pytest.fixture
def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls of the archive decoder (a cache hit makes none)."""
    calls: list[int] = []
    original = module._decode_archives

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_decode_archives", counting)
    return calls


# --- the real data set -------------------------------------------------------------------------


def test_real_data_has_1623_characters_of_20_drawings(omniglot_data: OmniglotData) -> None:
    assert omniglot_data.images.shape == (1623, 20, 28, 28)
    assert omniglot_data.images.dtype == torch.uint8
    assert omniglot_data.character_ids.tolist() == list(range(1, 1624))
    assert len(omniglot_data.alphabets) == 50
    background = [a for a in omniglot_data.alphabets if a.startswith("images_background/")]
    assert len(background) == 30
    assert (omniglot_data.alphabet_index < 30).sum() == 964


@pytest.mark.parametrize(
    ("alphabet", "first_id", "last_id"),
    [
        ("images_background/Arcadian", 1, 26),
        ("images_background/Latin", 683, 708),
        ("images_background/Alphabet_of_the_Magi", 709, 728),
        ("images_evaluation/Sylheti", 1503, 1530),
        ("images_evaluation/ULOG", 1598, 1623),
    ],
)
def test_alphabet_of_each_character_matches_the_readme(
    omniglot_data: OmniglotData, alphabet: str, first_id: int, last_id: int
) -> None:
    index = omniglot_data.alphabets.index(alphabet)
    ids = omniglot_data.character_ids[omniglot_data.alphabet_index == index]
    assert ids.tolist() == list(range(first_id, last_id + 1))


def test_images_are_inverted_so_ink_is_bright(omniglot_data: OmniglotData) -> None:
    pixels = omniglot_data.images.float() / 255
    assert 0.02 < pixels.mean() < 0.3  # mostly background
    assert pixels[:, :, 0, :].mean() < 0.01  # the top rows are background
    assert omniglot_data.images.max() == 255


@pytest.mark.parametrize(
    ("archive", "member", "character_id", "drawer"),
    [
        ("images_background.zip", "images_background/Latin/character01/0683_01.png", 683, 1),
        ("images_evaluation.zip", "images_evaluation/ULOG/character26/1623_20.png", 1623, 20),
    ],
)
def test_known_image_matches_a_direct_pillow_decode(
    omniglot_root: Path,
    omniglot_data: OmniglotData,
    archive: str,
    member: str,
    character_id: int,
    drawer: int,
) -> None:
    with zipfile.ZipFile(omniglot_root / archive) as handle:
        expected = _reference_thumbnail(handle.read(member))
    actual = omniglot_data.images[character_id - 1, drawer - 1].numpy()
    np.testing.assert_array_equal(actual, expected)


def test_the_two_identical_braille_dots_are_identical(omniglot_data: OmniglotData) -> None:
    # README: 0192_03.png and 0192_19.png are pixel-identical (a single dot).
    torch.testing.assert_close(omniglot_data.images[191, 2], omniglot_data.images[191, 18])


def test_second_load_reuses_the_cache_without_decoding(
    omniglot_root: Path,
    omniglot_cache_dir: Path,
    omniglot_data: OmniglotData,
    count_decodes: list[int],
) -> None:
    again = load_omniglot(omniglot_root, omniglot_cache_dir)
    assert count_decodes == []
    assert again.cache_path == omniglot_data.cache_path
    assert again.cache_path is not None and again.cache_path.parent == omniglot_cache_dir
    assert again.archive_sha256 == omniglot_data.archive_sha256
    assert torch.equal(again.images, omniglot_data.images)
    assert torch.equal(again.alphabet_index, omniglot_data.alphabet_index)
    assert again.alphabets == omniglot_data.alphabets


def test_truncated_real_archive_raises_naming_it(
    omniglot_root: Path, tmp_path: Path, count_decodes: list[int]
) -> None:
    (tmp_path / ARCHIVE_NAMES[0]).symlink_to(omniglot_root / ARCHIVE_NAMES[0])
    whole = (omniglot_root / ARCHIVE_NAMES[1]).read_bytes()
    (tmp_path / ARCHIVE_NAMES[1]).write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OmniglotDataError, match=r"images_evaluation\.zip: not a readable zip"):
        load_omniglot(tmp_path, tmp_path / "cache")


def test_missing_archive_raises_naming_it(omniglot_root: Path, tmp_path: Path) -> None:
    (tmp_path / ARCHIVE_NAMES[0]).symlink_to(omniglot_root / ARCHIVE_NAMES[0])
    with pytest.raises(FileNotFoundError, match=r"not found: .*images_evaluation\.zip"):
        load_omniglot(tmp_path, tmp_path / "cache")


# --- a synthetic twin in the same layout ---------------------------------------------------------


def test_synthetic_archives_decode_into_character_order(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data", (3, 2))
    data = _load_synthetic(root, tmp_path / "cache")
    assert data.images.shape == (5, 20, 28, 28)
    assert data.alphabets == ("images_background/Alpha", "images_evaluation/Beta")
    assert data.alphabet_index.tolist() == [0, 0, 0, 1, 1]
    for character_id, drawer in [(1, 1), (3, 20), (4, 7), (5, 13)]:
        expected = _reference_thumbnail(synthetic_png(character_id, drawer))
        np.testing.assert_array_equal(data.images[character_id - 1, drawer - 1].numpy(), expected)


def test_process_pool_gives_the_same_images_as_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_synthetic_omniglot(tmp_path / "data", (3, 2))
    serial = _load_synthetic(root, tmp_path / "serial")
    monkeypatch.setattr(module, "_IN_PROCESS_BELOW", 0)
    monkeypatch.setattr(module, "_CHUNK", 16)
    pooled = load_omniglot(root, tmp_path / "pooled", num_workers=2, expected_characters=None)
    assert torch.equal(serial.images, pooled.images)


def test_cache_is_written_atomically_and_reused(tmp_path: Path, count_decodes: list[int]) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    first = _load_synthetic(root, tmp_path / "cache")
    second = _load_synthetic(root, tmp_path / "cache")
    assert count_decodes == [1]
    assert first.cache_path is not None and first.cache_path == second.cache_path
    left = sorted(os.listdir(tmp_path / "cache"))
    assert left == sorted([first.cache_path.name, f".{first.cache_path.name}.lock"])  # no .tmp
    assert torch.equal(first.images, second.images)
    payload = torch.load(first.cache_path, weights_only=True)
    assert payload["meta"]["sha256"] == first.archive_sha256


def test_cache_is_rebuilt_when_an_archive_checksum_changes(
    tmp_path: Path, count_decodes: list[int]
) -> None:
    root = write_synthetic_omniglot(tmp_path / "data", seed=0)
    before = _load_synthetic(root, tmp_path / "cache")
    write_synthetic_omniglot(root, seed=1)  # same layout, different drawings
    after = _load_synthetic(root, tmp_path / "cache")
    assert count_decodes == [1, 1]
    assert after.archive_sha256 != before.archive_sha256
    assert after.cache_path != before.cache_path
    assert not torch.equal(after.images, before.images)
    expected = _reference_thumbnail(synthetic_png(2, 5, seed=1))
    np.testing.assert_array_equal(after.images[1, 4].numpy(), expected)


def test_corrupt_cache_file_is_rebuilt(
    tmp_path: Path, count_decodes: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    first = _load_synthetic(root, tmp_path / "cache")
    assert first.cache_path is not None
    first.cache_path.write_bytes(first.cache_path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        again = _load_synthetic(root, tmp_path / "cache")
    assert count_decodes == [1, 1]
    assert "ignoring unreadable Omniglot cache" in caplog.text
    assert torch.equal(again.images, first.images)


def test_unwritable_cache_still_returns_the_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger=module.__name__):
        data = _load_synthetic(root, blocker / "cache")
    assert data.cache_path is None
    assert data.images.shape == (5, 20, 28, 28)
    assert "could not write Omniglot cache" in caplog.text


def test_wrong_character_count_raises(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    with pytest.raises(OmniglotDataError, match="found 5 characters .* expected 1623"):
        load_omniglot(root, tmp_path / "cache", num_workers=0)


def test_missing_drawing_raises_naming_the_character(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data", skip={(2, 7)})
    with pytest.raises(OmniglotDataError, match=r"exactly one image per drawer .*ids \[2\]"):
        _load_synthetic(root, tmp_path / "cache")


def test_crc_error_raises_naming_archive_and_member(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data", stored=True)
    archive = root / "images_evaluation.zip"
    member = "images_evaluation/Beta/character01/0004_03.png"
    raw = bytearray(archive.read_bytes())
    raw[member_data_offset(archive, member) + 40] ^= 0xFF
    archive.write_bytes(bytes(raw))
    match = r"images_evaluation\.zip: cannot read .*0004_03\.png \(Bad CRC-32"
    with pytest.raises(OmniglotDataError, match=match):
        _load_synthetic(root, tmp_path / "cache")


@pytest.mark.parametrize("workers", [0, 2])
def test_undecodable_png_raises_naming_archive_and_member(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    member = "images_background/Alpha/character01/0001_01.png"
    root = write_synthetic_omniglot(tmp_path / "data", replace={member: b"not a png"})
    monkeypatch.setattr(module, "_IN_PROCESS_BELOW", 0)
    with pytest.raises(OmniglotDataError, match=r"background\.zip: cannot decode .*0001_01\.png"):
        load_omniglot(root, tmp_path / "cache", num_workers=workers, expected_characters=None)


def test_wrong_image_size_raises(tmp_path: Path) -> None:
    member = "images_background/Alpha/character02/0002_05.png"
    stream = io.BytesIO()
    Image.new("1", (50, 50), 1).save(stream, format="PNG")
    root = write_synthetic_omniglot(tmp_path / "data", replace={member: stream.getvalue()})
    with pytest.raises(OmniglotDataError, match=r"0002_05\.png is 50x50, expected 105x105"):
        _load_synthetic(root, tmp_path / "cache")


def test_unexpected_member_raises(tmp_path: Path) -> None:
    extra = {"images_background/Alpha/notes.txt": b"hello"}
    root = write_synthetic_omniglot(tmp_path / "data", extra=extra)
    with pytest.raises(OmniglotDataError, match=r"unexpected member 'images_background/Alpha/"):
        _load_synthetic(root, tmp_path / "cache")


# --- where the data and the cache live ---------------------------------------------------------


def test_root_precedence_is_argument_then_environment_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # no user copy of the archives
    default = resolve_omniglot_root()
    repository = Path(module.__file__).resolve().parents[2]
    sibling = repository.parent / "shared" / "data" / "omniglot"
    assert default == (
        sibling
        if (sibling / ARCHIVE_NAMES[0]).is_file()
        else tmp_path / "xdg" / "metarl" / "omniglot"
    )
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "from_env"))
    assert resolve_omniglot_root() == tmp_path / "from_env"
    assert resolve_omniglot_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_environment_root_is_used_by_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    monkeypatch.setenv(ROOT_ENV_VAR, str(root))
    data = load_omniglot(cache_dir=tmp_path / "cache", num_workers=0, expected_characters=None)
    assert data.num_characters == 5


def test_default_cache_dir_is_the_root_when_writable(tmp_path: Path) -> None:
    assert default_omniglot_cache_dir(tmp_path) == tmp_path


def test_default_cache_dir_falls_back_to_user_cache_for_read_only_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_omniglot_cache_dir(read_only) == tmp_path / "xdg" / "metarl" / "omniglot"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        expected = tmp_path / "home" / ".cache" / "metarl" / "omniglot"
        assert default_omniglot_cache_dir(read_only) == expected
    finally:
        read_only.chmod(0o755)


def test_default_cache_is_written_to_a_writable_root(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    data = load_omniglot(root, num_workers=0, expected_characters=None)
    assert data.cache_path is not None and data.cache_path.parent == root


def test_bad_num_workers_raises(tmp_path: Path) -> None:
    root = write_synthetic_omniglot(tmp_path / "data")
    with pytest.raises(ValueError, match="num_workers must be a non-negative int or None, got -1"):
        load_omniglot(root, tmp_path / "cache", num_workers=-1, expected_characters=None)
