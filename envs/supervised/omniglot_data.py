"""Omniglot images: decode the upstream zips once, then load a checksum-keyed tensor cache.

The data set (Lake et al. 2015) is read from ``images_background.zip`` and
``images_evaluation.zip`` laid out as upstream: ``images_background/<Alphabet>/characterNN/
IIII_DD.png`` with ``IIII`` the global character id (0001..1623) and ``DD`` the drawer (01..20).
The loader never downloads; ``metarl data omniglot`` (``envs.supervised.omniglot_fetch``)
fetches and verifies the upstream archives into the user data root, where the loader looks by
default.

Preprocessing follows cbfinn/maml (``data/omniglot_resized/resize_images.py``): each 105×105
1-bit PNG is converted to 8-bit grayscale,
resized to 28×28 with Pillow's LANCZOS filter and inverted so ink is bright (``255`` in the
cache, ``1.0`` once scaled). Converting to grayscale first matters: Pillow silently resizes mode
``"1"`` images with NEAREST whatever filter is asked for, so cbfinn/maml's ``resize_images.py``
(which resizes the 1-bit image directly) in fact produced binary nearest-neighbour images;
learn2learn (torchvision's Omniglot, ``convert("L")`` then LANCZOS) produces the anti-aliased
images kept here.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import logging
import multiprocessing
import os
import re
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

ARCHIVE_NAMES: tuple[str, str] = ("images_background.zip", "images_evaluation.zip")
"""File names of the two upstream archives, looked up in the data root."""
NUM_CHARACTERS = 1623
"""Characters in the full data set (964 background + 659 evaluation)."""
NUM_DRAWERS = 20
"""Drawings of each character, one per drawer."""
IMAGE_SIZE = 28
"""Side of the cached square images, in pixels."""
ROOT_ENV_VAR = "METARL_OMNIGLOT_ROOT"
"""Environment variable naming the data root when no ``root`` argument is given."""

_SOURCE_SIZE = (105, 105)
_CACHE_FORMAT_VERSION = 1
# A development copy beside the repository, used when the user data root has no archives.
_SIBLING_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "omniglot"
_MEMBER_RE = re.compile(
    r"^(?P<archive>[^/]+)/(?P<alphabet>[^/]+)/character\d+/(?P<id>\d{4})_(?P<drawer>\d{2})\.png$"
)
_IN_PROCESS_BELOW = 2000  # images; below this a process pool costs more than it saves
_CHUNK = 512  # images per decode job


class OmniglotDataError(ValueError):
    """The Omniglot archives or cache are unreadable or do not hold the expected data."""


@dataclasses.dataclass(frozen=True, eq=False)
class OmniglotData:
    """All Omniglot drawings, preprocessed, in character-id order.

    Attributes:
        images: ``uint8`` ``[character, drawer, 28, 28]``; ink is ``255``, background ``0``.
            Row ``i`` is character id ``i + 1``, column ``j`` drawer ``j + 1``.
        alphabet_index: ``int64`` ``[character]``, index into ``alphabets``.
        alphabets: Alphabet names as ``"<archive folder>/<alphabet>"`` (e.g.
            ``"images_background/Latin"``), sorted, so background alphabets come first.
        archive_sha256: sha256 hex digest of each archive, keyed by file name.
        cache_path: The cache file the data was read from or written to; ``None`` if the cache
            could not be written.
    """

    images: torch.Tensor
    alphabet_index: torch.Tensor
    alphabets: tuple[str, ...]
    archive_sha256: Mapping[str, str]
    cache_path: Path | None

    @property
    def num_characters(self) -> int:
        """Number of characters (rows of ``images``)."""
        return self.images.shape[0]

    @property
    def character_ids(self) -> torch.Tensor:
        """Upstream character ids, ``int64`` ``[character]``: ``1..num_characters``."""
        return torch.arange(1, self.num_characters + 1)


class _Member(NamedTuple):
    """One PNG inside an archive."""

    name: str
    alphabet: str  # "<archive folder>/<alphabet>"
    character_id: int
    drawer: int


def user_omniglot_root() -> Path:
    """Return the user data root, where ``metarl data omniglot`` downloads to by default.

    It is ``$XDG_CACHE_HOME/metarl/omniglot``, else ``~/.cache/metarl/omniglot``.

    Returns:
        The folder (not checked for existence).
    """
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "metarl" / "omniglot"


def resolve_omniglot_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the Omniglot data root: ``root``, else ``$METARL_OMNIGLOT_ROOT``, else the default.

    The default is the user data root (``user_omniglot_root``) if it holds both archives, else a
    development copy beside the repository if that does, else the user data root (so that a
    missing-archive error names where ``metarl data omniglot`` puts them).

    Args:
        root: Explicit data root; takes precedence over the environment variable.

    Returns:
        The data root (not checked for existence).
    """
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(ROOT_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    user = user_omniglot_root()
    for candidate in (user, _SIBLING_ROOT):
        if all((candidate / name).is_file() for name in ARCHIVE_NAMES):
            return candidate
    return user


def default_omniglot_cache_dir(root: str | os.PathLike[str]) -> Path:
    """Return where the cache goes by default: ``root`` if writable, else the user cache.

    The user cache is ``$XDG_CACHE_HOME/metarl/omniglot``, falling back to
    ``~/.cache/metarl/omniglot``. A directory whose permission bits grant write access to no one
    counts as read-only even for root (for whom ``os.access`` ignores permission bits).

    Args:
        root: The data root.

    Returns:
        The cache directory (not created).
    """
    root = Path(root)
    if _is_writable_dir(root):
        return root
    return user_omniglot_root()


def load_omniglot(
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    num_workers: int | None = None,
    expected_characters: int | None = NUM_CHARACTERS,
) -> OmniglotData:
    """Load the preprocessed Omniglot images, decoding the archives only on a cache miss.

    The cache file name and contents carry the sha256 of both archives, so replacing an archive
    rebuilds the cache; an unreadable or mismatching cache file is rebuilt too. The cache is
    written atomically (temporary file in the same directory, then ``os.replace``), so
    concurrent builders cannot leave a partial file. If it cannot be written, a warning is logged
    and the decoded data is returned anyway.

    Args:
        root: Data root holding ``images_background.zip`` and ``images_evaluation.zip``; see
            ``resolve_omniglot_root``.
        cache_dir: Cache directory; see ``default_omniglot_cache_dir``.
        num_workers: Decoding processes; ``None`` uses every available core, ``0`` or ``1``
            decodes in this process.
        expected_characters: Required number of characters; ``None`` accepts any complete
            (ids ``1..N``, 20 drawers each) data set, which tests use for small synthetic archives.

    Returns:
        The images, ``uint8`` ``[characters, 20, 28, 28]``, and their alphabets.

    Raises:
        FileNotFoundError: If an archive is missing.
        OmniglotDataError: If an archive is corrupt (bad zip, CRC error, undecodable PNG) or its
            contents do not match the expected layout and counts; the message names the file.
    """
    workers = _worker_count(num_workers)
    root = resolve_omniglot_root(root)
    paths = [root / name for name in ARCHIVE_NAMES]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"Omniglot archive not found: {path} (run `metarl data omniglot` to download "
                f"it, or pass root= or set {ROOT_ENV_VAR} to the folder holding "
                f"{' and '.join(ARCHIVE_NAMES)})"
            )
    shas = {path.name: _sha256(path) for path in paths}
    cache_dir = default_omniglot_cache_dir(root) if cache_dir is None else Path(cache_dir)
    cache_path = cache_dir / (
        f"omniglot-{IMAGE_SIZE}px-v{_CACHE_FORMAT_VERSION}-"
        f"{shas[ARCHIVE_NAMES[0]][:12]}-{shas[ARCHIVE_NAMES[1]][:12]}.pt"
    )
    data = _read_cache(cache_path, shas)
    if data is None:
        with _exclusive_build(cache_path):  # concurrent loaders (ranks, test workers) build once
            data = _read_cache(cache_path, shas, quiet=True)
            if data is None:
                data = _build_cache(paths, shas, cache_path, workers)
    if expected_characters is not None and data.num_characters != expected_characters:
        raise OmniglotDataError(
            f"{root}: found {data.num_characters} characters in {' + '.join(ARCHIVE_NAMES)}, "
            f"expected {expected_characters}"
        )
    return data


def _build_cache(
    paths: Sequence[Path], shas: Mapping[str, str], cache_path: Path, num_workers: int
) -> OmniglotData:
    """Decode the archives and write the cache; return the data even if writing fails."""
    start = time.perf_counter()
    images, alphabet_index, alphabets = _decode_archives(paths, num_workers)
    logger.info(
        "decoded %d Omniglot images in %.2f s with %d worker(s)",
        images.shape[0] * images.shape[1],
        time.perf_counter() - start,
        num_workers,
    )
    data = OmniglotData(
        images=torch.from_numpy(images),
        alphabet_index=torch.from_numpy(alphabet_index),
        alphabets=alphabets,
        archive_sha256=dict(shas),
        cache_path=cache_path,
    )
    payload = {
        "images": data.images,
        "alphabet_index": data.alphabet_index,
        "meta": {
            "format_version": _CACHE_FORMAT_VERSION,
            "image_size": IMAGE_SIZE,
            "alphabets": list(alphabets),
            "sha256": dict(shas),
        },
    }
    try:
        _save_atomic(payload, cache_path)
    except OSError as error:
        logger.warning("could not write Omniglot cache %s: %s", cache_path, error)
        return dataclasses.replace(data, cache_path=None)
    return data


def _is_writable_dir(path: Path) -> bool:
    """Whether ``path`` is a directory we may write to, honouring its permission bits."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK) and bool(mode & 0o222)


def _sha256(path: Path) -> str:
    """Return the sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _worker_count(num_workers: int | None) -> int:
    """Resolve the ``num_workers`` argument to a process count (``<= 1`` means in-process)."""
    if num_workers is not None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int or None, got {num_workers!r}")
        return num_workers
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def _exclusive_build(cache_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<cache>.lock`` where possible; otherwise do nothing.

    Without ``fcntl`` (Windows) or a writable cache directory, concurrent builders each decode
    and the atomic rename keeps the cache whole.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        handle = (cache_path.parent / f".{cache_path.name}.lock").open("a+b")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_cache(path: Path, shas: Mapping[str, str], quiet: bool = False) -> OmniglotData | None:
    """Return the cached data if ``path`` holds a valid cache for these archives, else ``None``.

    ``quiet`` skips the warnings (used when re-checking a cache already found wanting).
    """
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = payload["meta"]
        images, alphabet_index = payload["images"], payload["alphabet_index"]
        alphabets = tuple(str(name) for name in meta["alphabets"])
        valid = (
            meta["format_version"] == _CACHE_FORMAT_VERSION
            and meta["image_size"] == IMAGE_SIZE
            and dict(meta["sha256"]) == dict(shas)
            and images.dtype == torch.uint8
            and tuple(images.shape[1:]) == (NUM_DRAWERS, IMAGE_SIZE, IMAGE_SIZE)
            and alphabet_index.dtype == torch.int64
            and tuple(alphabet_index.shape) == (images.shape[0],)
            and 0 <= int(alphabet_index.min()) <= int(alphabet_index.max()) < len(alphabets)
        )
    except Exception as error:  # any unreadable cache is rebuilt, never trusted
        if not quiet:
            logger.warning("ignoring unreadable Omniglot cache %s: %s", path, error)
        return None
    if not valid:
        if not quiet:
            logger.warning("ignoring Omniglot cache %s: it does not match the archives", path)
        return None
    return OmniglotData(images, alphabet_index, alphabets, dict(shas), path)


def _save_atomic(payload: dict[str, object], path: Path) -> None:
    """Write ``payload`` with ``torch.save`` to a temporary file beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def _decode_archives(
    paths: Sequence[Path], num_workers: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode every PNG of the archives and arrange them by character id and drawer.

    Args:
        paths: The archives.
        num_workers: Decoding processes; ``<= 1`` decodes in this process.

    Returns:
        ``images`` ``uint8`` ``[C, 20, 28, 28]`` (ink 255), ``alphabet_index`` ``int64`` ``[C]``
        and the sorted alphabet names.
    """
    with contextlib.ExitStack() as stack:
        archives = [stack.enter_context(_open_archive(path)) for path in paths]
        listed = [
            _list_members(path, archive) for path, archive in zip(paths, archives, strict=True)
        ]
        submit: Callable[..., concurrent.futures.Future[np.ndarray]] = _in_process_submit
        if num_workers > 1 and sum(map(len, listed)) >= _IN_PROCESS_BELOW:
            pool = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=_mp_context())
            submit = stack.enter_context(pool).submit
        pixels = [
            future
            for path, archive, members in zip(paths, archives, listed, strict=True)
            for future in _read_and_submit(path, archive, members, submit)
        ]
        decoded = np.concatenate([future.result() for future in pixels])
    members = [member for archive_members in listed for member in archive_members]
    return _arrange(members, decoded, paths)


def _open_archive(path: Path) -> zipfile.ZipFile:
    """Open a zip archive, turning any failure into an ``OmniglotDataError`` naming the file."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise OmniglotDataError(f"{path}: not a readable zip archive ({error})") from error


def _list_members(path: Path, archive: zipfile.ZipFile) -> list[_Member]:
    """List the character PNGs of one archive, checking every file follows the upstream layout."""
    members = []
    for info in archive.infolist():
        if info.is_dir():
            continue
        match = _MEMBER_RE.match(info.filename)
        if match is None:
            raise OmniglotDataError(
                f"{path}: unexpected member {info.filename!r}; expected "
                "<archive>/<Alphabet>/characterNN/IIII_DD.png"
            )
        members.append(
            _Member(
                name=info.filename,
                alphabet=f"{match['archive']}/{match['alphabet']}",
                character_id=int(match["id"]),
                drawer=int(match["drawer"]),
            )
        )
    return members


def _read_and_submit(
    path: Path,
    archive: zipfile.ZipFile,
    members: Sequence[_Member],
    submit: Callable[..., concurrent.futures.Future[np.ndarray]],
) -> list[concurrent.futures.Future[np.ndarray]]:
    """Read the compressed members (checking CRCs) and submit their PNG bytes for decoding."""
    futures = []
    for start in range(0, len(members), _CHUNK):
        names = [member.name for member in members[start : start + _CHUNK]]
        blobs = []
        for name in names:
            try:
                blobs.append(archive.read(name))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
                raise OmniglotDataError(f"{path}: cannot read {name} ({error})") from error
        futures.append(submit(_decode_pngs, str(path), names, blobs))
    return futures


def _decode_pngs(archive: str, names: Sequence[str], blobs: Sequence[bytes]) -> np.ndarray:
    """Decode PNG bytes to inverted 28×28 LANCZOS thumbnails, ``uint8`` ``[len(blobs), 28, 28]``.

    Runs in worker processes, so it takes and returns only picklable plain data.
    """
    out = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for index, (name, blob) in enumerate(zip(names, blobs, strict=True)):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                image.load()
                size = image.size
                gray = image.convert("L")
        except Exception as error:  # Pillow raises many types for a broken PNG
            raise OmniglotDataError(f"{archive}: cannot decode {name} as PNG ({error})") from error
        if size != _SOURCE_SIZE:
            raise OmniglotDataError(
                f"{archive}: {name} is {size[0]}x{size[1]}, expected "
                f"{_SOURCE_SIZE[0]}x{_SOURCE_SIZE[1]}"
            )
        thumbnail = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        out[index] = 255 - np.asarray(thumbnail, dtype=np.uint8)  # invert: ink = 255
    return out


def _in_process_submit(
    function: Callable[..., np.ndarray], *args: object
) -> concurrent.futures.Future[np.ndarray]:
    """Run ``function(*args)`` now and return its result (or error) as a finished future."""
    future: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()
    try:
        future.set_result(function(*args))
    except Exception as error:  # re-raised by future.result()
        future.set_exception(error)
    return future


def _mp_context() -> multiprocessing.context.BaseContext | None:
    """Fork on Linux (workers start instantly, no torch re-import); the default elsewhere."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return None


def _arrange(
    members: Sequence[_Member], decoded: np.ndarray, paths: Sequence[Path]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Place decoded images at ``[character_id - 1, drawer - 1]`` after checking the counts."""
    where = " + ".join(str(path) for path in paths)
    if not members:
        raise OmniglotDataError(f"{where}: no character images found")
    ids = np.array([member.character_id for member in members], dtype=np.int64)
    drawers = np.array([member.drawer for member in members], dtype=np.int64)
    num_characters = int(ids.max())
    if ids.min() < 1 or drawers.min() < 1 or drawers.max() > NUM_DRAWERS:
        raise OmniglotDataError(
            f"{where}: character ids must be >= 1 and drawers 01..{NUM_DRAWERS}, got ids "
            f"{ids.min()}..{ids.max()} and drawers {drawers.min()}..{drawers.max()}"
        )
    counts = np.zeros((num_characters, NUM_DRAWERS), dtype=np.int64)
    np.add.at(counts, (ids - 1, drawers - 1), 1)
    if (counts != 1).any():
        bad = np.flatnonzero((counts != 1).any(axis=1))[:5] + 1
        raise OmniglotDataError(
            f"{where}: every character id 1..{num_characters} needs exactly one image per drawer "
            f"01..{NUM_DRAWERS}; ids {bad.tolist()} (first 5 shown) are missing or repeated"
        )
    alphabets = tuple(sorted({member.alphabet for member in members}))
    lookup = {name: index for index, name in enumerate(alphabets)}
    per_image = np.array([lookup[member.alphabet] for member in members], dtype=np.int64)
    alphabet_index = np.full(num_characters, -1, dtype=np.int64)
    alphabet_index[ids - 1] = per_image
    if (alphabet_index[ids - 1] != per_image).any():
        raise OmniglotDataError(f"{where}: a character id appears under two alphabets")
    images = np.empty((num_characters, NUM_DRAWERS, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    images[ids - 1, drawers - 1] = decoded
    return images, alphabet_index, alphabets
