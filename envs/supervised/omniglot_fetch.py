"""Download the Omniglot archives from brendenlake/omniglot and verify them by content.

``download_omniglot`` fetches ``images_background.zip`` and ``images_evaluation.zip`` from the
``python/`` folder of GitHub ``brendenlake/omniglot`` (Lake et al. 2015, MIT licence) into the
data root that ``load_omniglot`` reads by default (``$METARL_OMNIGLOT_ROOT``, else
``$XDG_CACHE_HOME/metarl/omniglot``, else ``~/.cache/metarl/omniglot``).

Each archive is written to a temporary file beside its destination, verified, and only then
renamed into place, so an interrupted or failed download leaves nothing behind. Verification
accepts an archive whose MD5 is the upstream one (the values torchvision checks) at once;
otherwise it compares the archive's content with a manifest recorded in this package: for every
alphabet, the number of PNGs and a sha256 over their paths and sha256 digests. Other copies of the
data set (re-zipped, with other timestamps or compression) are accepted if they hold the same
PNG files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from envs.supervised._omniglot_manifest import ALPHABET_DIGESTS
from envs.supervised.omniglot_data import (
    _MEMBER_RE,
    ARCHIVE_NAMES,
    ROOT_ENV_VAR,
    user_omniglot_root,
)

logger = logging.getLogger(__name__)

UPSTREAM_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
"""Folder URL the archives are downloaded from (GitHub brendenlake/omniglot, ``python/``)."""
UPSTREAM_MD5: Mapping[str, str] = {
    "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
}
"""MD5 of the upstream archives (9,464,212 and 6,462,886 bytes), as torchvision records them."""
MAX_ARCHIVE_BYTES = 64 << 20
"""A download larger than this is aborted (the upstream archives are under 10 MB each)."""

_HELP = (
    "without network access, copy images_background.zip and images_evaluation.zip from "
    "https://github.com/brendenlake/omniglot (folder python/) into {root} by hand, or set "
    f"{ROOT_ENV_VAR} to a folder holding them"
)


class OmniglotFetchError(RuntimeError):
    """An Omniglot archive could not be downloaded, or does not hold the Omniglot images."""


@dataclasses.dataclass(frozen=True)
class FetchedArchive:
    """One archive in the data root after ``download_omniglot``.

    Attributes:
        path: Where the archive is.
        downloaded: ``False`` if a verified archive was already there.
        verified_by: ``"md5"`` (the upstream archive, byte for byte) or ``"content"`` (another
            archive with the same PNG files).
    """

    path: Path
    downloaded: bool
    verified_by: str


def omniglot_download_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return where ``download_omniglot`` writes: ``root``, else ``$METARL_OMNIGLOT_ROOT``, else ...

    ... the user data root (``$XDG_CACHE_HOME/metarl/omniglot`` or ``~/.cache/metarl/omniglot``).

    Args:
        root: Explicit folder; takes precedence over the environment variable.

    Returns:
        The folder (not created).
    """
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(ROOT_ENV_VAR)
    return Path(from_env).expanduser() if from_env else user_omniglot_root()


def content_digests(path: str | os.PathLike[str]) -> dict[str, tuple[int, str]]:
    """Return, per alphabet of an archive, its PNG count and a sha256 over its PNG files.

    The alphabet digest is the sha256 of the lines ``"<member path> <sha256 of its bytes>"``,
    each ended by a newline, sorted by path. Directory entries are ignored; any other member
    outside the upstream layout (``<archive>/<Alphabet>/characterNN/IIII_DD.png``) is an error,
    as for ``load_omniglot``.

    Args:
        path: A zip archive.

    Returns:
        ``{"<archive folder>/<Alphabet>": (number of PNGs, hex digest)}``.

    Raises:
        OmniglotFetchError: If the file is not a readable zip, a member fails its CRC check, or a
            member does not follow the upstream layout.
    """
    lines: dict[str, list[str]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                match = _MEMBER_RE.match(info.filename)
                if match is None:
                    raise OmniglotFetchError(
                        f"{path}: unexpected member {info.filename!r}; expected "
                        "<archive>/<Alphabet>/characterNN/IIII_DD.png"
                    )
                digest = hashlib.sha256(archive.read(info)).hexdigest()
                alphabet = f"{match['archive']}/{match['alphabet']}"
                lines.setdefault(alphabet, []).append(f"{info.filename} {digest}\n")
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        raise OmniglotFetchError(f"{path}: not a readable zip archive ({error})") from error
    return {
        alphabet: (len(rows), hashlib.sha256("".join(sorted(rows)).encode()).hexdigest())
        for alphabet, rows in lines.items()
    }


def verify_archive(path: str | os.PathLike[str], name: str | None = None) -> str:
    """Check that ``path`` is the Omniglot archive ``name`` (default: the file's own name).

    Args:
        path: The archive to check.
        name: ``"images_background.zip"`` or ``"images_evaluation.zip"``.

    Returns:
        ``"md5"`` if the file is the upstream archive byte for byte, else ``"content"`` if it
        holds the same PNG files.

    Raises:
        ValueError: If ``name`` is not one of the two archive names.
        OmniglotFetchError: If the archive is unreadable or its PNGs differ from the manifest;
            the message names the alphabets that differ.
    """
    path = Path(path)
    name = path.name if name is None else name
    if name not in ARCHIVE_NAMES:
        raise ValueError(f"name must be one of {ARCHIVE_NAMES}, got {name!r}")
    return _verify(path, name, str(path))


def _verify(path: Path, name: str, label: str) -> str:
    """``verify_archive`` with ``label`` naming the file in error messages."""
    if _md5(path) == UPSTREAM_MD5[name]:
        return "md5"
    folder = name.removesuffix(".zip") + "/"
    expected = {k: v for k, v in ALPHABET_DIGESTS.items() if k.startswith(folder)}
    try:
        found = content_digests(path)
    except OmniglotFetchError as error:
        raise OmniglotFetchError(str(error).replace(str(path), label, 1)) from error
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    differ = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or extra or differ:
        parts = [
            f"{label}: {', '.join(k.split('/', 1)[1] if k.startswith(folder) else k for k in ks)}"
            for label, ks in (("differing", differ), ("missing", missing), ("unexpected", extra))
            if ks
        ]
        raise OmniglotFetchError(
            f"{label} is not the Omniglot {name}: its MD5 is not the upstream one and its PNG "
            f"files differ from the recorded ones (alphabets {'; '.join(parts)})"
        )
    return "content"


def download_omniglot(
    root: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    opener: Callable[..., Any] | None = None,
) -> list[FetchedArchive]:
    """Download and verify both Omniglot archives into ``root``; keep verified ones already there.

    Args:
        root: Destination folder; see ``omniglot_download_root``. Created if needed.
        base_url: Folder URL holding the two archives, ending in ``/`` (``file://`` URLs work
            too); default ``UPSTREAM_URL``.
        timeout: Seconds to wait for the server before giving up.
        opener: A stand-in for ``urllib.request.urlopen`` (the default), called as
            ``opener(url, timeout=timeout)``.

    Returns:
        One ``FetchedArchive`` per archive, in ``ARCHIVE_NAMES`` order.

    Raises:
        OmniglotFetchError: If a download fails (no network, HTTP error, too large) or a
            downloaded archive fails verification; nothing is left at its destination then. The
            message is one line saying what failed and how to get the files otherwise.
    """
    root = omniglot_download_root(root)
    base_url = UPSTREAM_URL if base_url is None else base_url
    opener = urllib.request.urlopen if opener is None else opener
    fetched = []
    for name in ARCHIVE_NAMES:
        dest = root / name
        if dest.is_file():
            try:
                fetched.append(FetchedArchive(dest, False, verify_archive(dest, name)))
                continue
            except OmniglotFetchError as error:
                logger.warning("replacing %s: %s", dest, error)
        fetched.append(
            FetchedArchive(dest, True, _download(base_url + name, dest, timeout, opener))
        )
    return fetched


def _download(url: str, dest: Path, timeout: float, opener: Callable[..., Any]) -> str:
    """Download ``url`` to a temporary file beside ``dest``, verify it, then rename it."""
    help_text = _HELP.format(root=dest.parent)
    try:
        response = opener(url, timeout=timeout)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise OmniglotFetchError(f"cannot download {url} ({reason}); {help_text}") from error
    created = _missing_dirs(dest.parent)
    tmp_name = None
    try:
        with response:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
            with os.fdopen(fd, "wb") as out:
                _copy(response, out, url, help_text)
        verified_by = _verify(Path(tmp_name), dest.name, f"the file downloaded from {url}")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, dest)
        return verified_by
    except OSError as error:
        raise OmniglotFetchError(f"cannot write {dest} ({error}); {help_text}") from error
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
        for folder in created:  # deepest first; only folders this call made, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()


def _copy(response: Any, out: Any, url: str, help_text: str) -> None:
    """Stream ``response`` into ``out``, turning read failures into ``OmniglotFetchError``."""
    size = 0
    try:
        while block := response.read(1 << 20):
            size += len(block)
            if size > MAX_ARCHIVE_BYTES:
                raise OmniglotFetchError(
                    f"{url} is larger than {MAX_ARCHIVE_BYTES >> 20} MiB: not an Omniglot archive"
                )
            out.write(block)
    except (
        urllib.error.URLError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    ) as error:
        raise OmniglotFetchError(f"download of {url} failed ({error}); {help_text}") from error


def _missing_dirs(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _md5(path: Path) -> str:
    """MD5 hex digest of a file (compared with the upstream archives' published values)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
