"""Downloading and verifying the Omniglot archives, without a network.

The real archives (re-zipped copies of the upstream PNGs, so their MD5 is not upstream's) check
the content path of verification; ``file://`` URLs and a failing stand-in for ``urlopen`` check
the download path.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import urllib.error
import warnings
import zipfile
from pathlib import Path

import pytest

from envs.supervised import ARCHIVE_NAMES, ROOT_ENV_VAR, omniglot_data, resolve_omniglot_root
from envs.supervised import omniglot_fetch as fetch
from envs.supervised._omniglot_manifest import ALPHABET_DIGESTS
from metarl import cli


@pytest.fixture()
def archives(omniglot_root: Path, tmp_path: Path) -> Path:
    """Copies of the real archives in a folder of their own."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name in ARCHIVE_NAMES:
        shutil.copyfile(omniglot_root / name, folder / name)
    return folder


def _no_network(url: str, timeout: float) -> None:
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


# --- verification ------------------------------------------------------------------------------


def test_manifest_covers_the_whole_data_set() -> None:
    assert len(ALPHABET_DIGESTS) == 50
    assert sum(count for count, _ in ALPHABET_DIGESTS.values()) == 32460
    background = [k for k in ALPHABET_DIGESTS if k.startswith("images_background/")]
    assert len(background) == 30
    assert sum(ALPHABET_DIGESTS[k][0] for k in background) == 964 * 20


def test_real_archives_pass_by_content(archives: Path) -> None:
    for name in ARCHIVE_NAMES:
        assert fetch.verify_archive(archives / name) == "content"


def test_alphabet_digest_is_the_documented_hash(archives: Path) -> None:
    path = archives / "images_evaluation.zip"
    with zipfile.ZipFile(path) as archive:
        rows = sorted(
            f"{info.filename} {hashlib.sha256(archive.read(info)).hexdigest()}\n"
            for info in archive.infolist()
            if info.filename.startswith("images_evaluation/Angelic/") and not info.is_dir()
        )
    expected = (20 * 20, hashlib.sha256("".join(rows).encode()).hexdigest())
    assert fetch.content_digests(path)["images_evaluation/Angelic"] == expected


def test_upstream_md5_is_accepted_without_reading_the_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "images_background.zip"
    path.write_bytes(b"not even a zip")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(fetch.UPSTREAM_MD5, "images_background.zip", md5)
    assert fetch.verify_archive(path) == "md5"


def test_changed_png_is_rejected_naming_its_alphabet(archives: Path) -> None:
    path = archives / "images_evaluation.zip"
    with zipfile.ZipFile(path) as archive:
        other = archive.read("images_evaluation/Angelic/character01/0965_02.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "a") as archive:  # same path, other bytes: a changed image
            archive.writestr("images_evaluation/Angelic/character01/0965_01.png", other)
    with pytest.raises(fetch.OmniglotFetchError, match=r"alphabets differing: Angelic\)"):
        fetch.verify_archive(path)


def test_archive_under_the_other_name_is_rejected(archives: Path, tmp_path: Path) -> None:
    swapped = tmp_path / "images_background.zip"
    shutil.copyfile(archives / "images_evaluation.zip", swapped)
    with pytest.raises(fetch.OmniglotFetchError, match="missing: Alphabet_of_the_Magi, ") as info:
        fetch.verify_archive(swapped)
    assert "unexpected: images_evaluation/Angelic" in str(info.value)


def test_truncated_archive_is_rejected(archives: Path) -> None:
    path = archives / "images_background.zip"
    path.write_bytes(path.read_bytes()[: 1 << 20])
    with pytest.raises(fetch.OmniglotFetchError, match="not a readable zip archive"):
        fetch.verify_archive(path)


def test_member_outside_the_layout_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "images_evaluation.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__MACOSX/._images_evaluation", b"")
    with pytest.raises(fetch.OmniglotFetchError, match="unexpected member '__MACOSX/"):
        fetch.verify_archive(path)


def test_unknown_archive_name_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        fetch.verify_archive(tmp_path / "x.zip", "images_small1.zip")


# --- download ----------------------------------------------------------------------------------


def test_download_from_file_urls_verifies_and_places_both_archives(
    archives: Path, tmp_path: Path
) -> None:
    root = tmp_path / "new" / "omniglot"
    got = fetch.download_omniglot(root, base_url=archives.as_uri() + "/")
    assert [(a.path, a.downloaded, a.verified_by) for a in got] == [
        (root / name, True, "content") for name in ARCHIVE_NAMES
    ]
    for name in ARCHIVE_NAMES:
        assert (root / name).read_bytes() == (archives / name).read_bytes()
    assert sorted(p.name for p in root.iterdir()) == sorted(ARCHIVE_NAMES)  # no .part left
    again = fetch.download_omniglot(root, opener=_no_network)  # verified files are kept
    assert [a.downloaded for a in again] == [False, False]


def test_no_network_fails_with_one_clear_line_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "absent" / "omniglot"
    with pytest.raises(fetch.OmniglotFetchError) as info:
        fetch.download_omniglot(root, opener=_no_network)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot download {fetch.UPSTREAM_URL}images_background.zip (")
    assert "Temporary failure in name resolution" in message
    assert f"into {root} by hand" in message and ROOT_ENV_VAR in message
    assert not (tmp_path / "absent").exists()


def test_rejected_download_leaves_no_file(tmp_path: Path) -> None:
    bogus = tmp_path / "mirror"
    bogus.mkdir()
    with zipfile.ZipFile(bogus / "images_background.zip", "w") as archive:
        archive.writestr("images_background/Latin/character01/0683_01.png", b"png")
    root = tmp_path / "omniglot"
    with pytest.raises(fetch.OmniglotFetchError, match="the file downloaded from file://"):
        fetch.download_omniglot(root, base_url=bogus.as_uri() + "/")
    assert not root.exists()


def test_missing_file_url_is_a_download_error(tmp_path: Path) -> None:
    root = tmp_path / "omniglot"
    root.mkdir()
    with pytest.raises(fetch.OmniglotFetchError, match="cannot download file://"):
        fetch.download_omniglot(root, base_url=(tmp_path / "nowhere").as_uri() + "/")
    assert list(root.iterdir()) == []


def test_cli_data_omniglot_exits_1_with_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(fetch, "UPSTREAM_URL", (tmp_path / "offline").as_uri() + "/")
    assert cli.main(["data", "omniglot", "--root", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download file://") and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_cli_data_omniglot_downloads_into_the_environment_root(
    archives: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(fetch, "UPSTREAM_URL", archives.as_uri() + "/")
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "env_root"))
    assert cli.main(["data", "omniglot"]) == 0
    out = capsys.readouterr().out
    for name in ARCHIVE_NAMES:
        assert f"{tmp_path / 'env_root' / name}: downloaded, verified by content" in out
    assert resolve_omniglot_root() == tmp_path / "env_root"


# --- where the loader looks --------------------------------------------------------------------


def test_loader_prefers_the_user_root_once_it_holds_the_archives(
    archives: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "xdg" / "metarl" / "omniglot"
    monkeypatch.setattr(omniglot_data, "_SIBLING_ROOT", tmp_path / "no_sibling")
    assert resolve_omniglot_root() == user  # nothing anywhere: the error will name this folder
    with pytest.raises(FileNotFoundError, match="run `metarl data omniglot`"):
        omniglot_data.load_omniglot()
    monkeypatch.setattr(omniglot_data, "_SIBLING_ROOT", archives)
    assert resolve_omniglot_root() == archives
    assert fetch.omniglot_download_root() == user  # where `metarl data omniglot` puts them
    user.mkdir(parents=True)
    for name in ARCHIVE_NAMES:
        shutil.copyfile(archives / name, user / name)
    assert resolve_omniglot_root() == user
