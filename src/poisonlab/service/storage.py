"""A content-addressed file store for contributed images.

Each blob is stored once under its sha256 (``blobs/ab/abcdef...``). A write goes to a temporary
file in the same folder, is flushed and ``fsync``-ed, atomically renamed onto its final name, and
the folder is ``fsync``-ed too, so that after :meth:`BlobStore.put` returns the bytes survive a
crash of the process or the machine. A reader therefore never sees a partial blob.

A crash between the blob write and the database commit leaves a file no row points to (and a
crash during the write a ``.tmp-`` file). Nothing ever reads a blob without a row, but the files
pile up (3-15 per ``kill -9`` under load), so the service collects them when it starts
(:meth:`BlobStore.collect_orphans`): files no row references, older than a grace period so that
an upload in flight in another process (written, not yet committed) keeps its blob. Reusing an
existing blob refreshes its modification time for the same reason. :meth:`BlobStore.orphans`
lists unreferenced blobs regardless of age.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FOLDER = re.compile(r"^[0-9a-f]{2}$")
_TMP_PREFIX = ".tmp-"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Immutable blobs named by their sha256, under ``root``.

    Parameters
    ----------
    root : Path
        Folder of the store (created when missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob ``digest`` (64 lowercase hex digits) lives."""
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ValueError(f"a blob name must be 64 lowercase hex digits, got {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its sha256 (a no-op when the blob exists)."""
        digest = sha256_hex(data)
        final = self.path(digest)
        if final.is_file() and final.stat().st_size == len(data):
            # a fresh mtime keeps a blob a new row is about to reference out of orphan collection
            os.utime(final)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return digest

    def get(self, digest: str, *, verify: bool = True) -> bytes:
        """The blob's bytes; with ``verify`` their sha256 is checked (ValueError when tampered)."""
        path = self.path(digest)
        if not path.is_file():
            raise FileNotFoundError(f"blob {digest} is missing from {self.root}")
        data = path.read_bytes()
        if verify and sha256_hex(data) != digest:
            raise ValueError(f"blob {digest} is corrupt or was modified (its sha256 no longer matches)")
        return data

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and bool(_SHA256.match(digest)) and self.path(digest).is_file()

    def __iter__(self) -> Iterator[str]:
        for path in sorted(self.root.glob("??/*")):
            if _SHA256.match(path.name):
                yield path.name

    def orphans(self, referenced: Iterable[str]) -> list[str]:
        """Blobs no database row references (left by a crash between file write and commit)."""
        keep = set(referenced)
        return [d for d in self if d not in keep]

    def collect_orphans(
        self,
        referenced: Callable[[str], Iterable[str]],
        *,
        grace_s: float,
        now: float | None = None,
    ) -> tuple[int, int]:
        """Delete blob files no row references and left-over temporary files, older than ``grace_s``.

        Only regular files directly in the store's two-hex-digit folders are considered (no links
        are followed, nothing outside ``root`` is touched), and only those named like a blob in its
        own folder or like a temporary file; anything else is left alone.

        Parameters
        ----------
        referenced : callable
            ``referenced(prefix)`` -> the referenced digests starting with the two hex digits
            ``prefix`` (one bounded database query per folder that has candidates).
        grace_s : float
            Files modified less than this many seconds ago are kept (an upload may be in flight).
        now : float, optional
            ``time.time()`` by default.

        Returns
        -------
        tuple of int
            (files deleted, unreferenced files kept because they are younger than the grace period).
        """
        now = time.time() if now is None else now
        deleted = young = 0
        with os.scandir(self.root) as folders:
            subdirs = [e for e in folders if _FOLDER.match(e.name) and e.is_dir(follow_symlinks=False)]
        for folder in sorted(subdirs, key=lambda e: e.name):
            candidates = self._candidates(Path(folder.path))
            if not candidates:
                continue
            keep = set(referenced(folder.name))
            for path, mtime in candidates:
                if path.name in keep:
                    continue
                if now - mtime < grace_s:
                    young += 1
                elif self._unlink_if_unchanged(path, mtime):
                    deleted += 1
        return deleted, young

    @staticmethod
    def _candidates(folder: Path) -> list[tuple[Path, float]]:
        """(path, mtime) of the blob-named and temporary regular files in one store folder."""
        found = []
        with os.scandir(folder) as entries:
            for entry in entries:
                own_blob = _SHA256.match(entry.name) and entry.name[:2] == folder.name
                if (own_blob or entry.name.startswith(_TMP_PREFIX)) and entry.is_file(follow_symlinks=False):
                    found.append((Path(entry.path), entry.stat(follow_symlinks=False).st_mtime))
        return found

    @staticmethod
    def _unlink_if_unchanged(path: Path, mtime: float) -> bool:
        """Unlink ``path`` unless it vanished or was touched since listed (reused by an upload)."""
        try:
            if path.stat(follow_symlinks=False).st_mtime != mtime:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True
