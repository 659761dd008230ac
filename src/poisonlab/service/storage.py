"""A content-addressed file store for contributed images.

Each blob is stored once under its sha256 (``blobs/ab/abcdef...``). A write goes to a temporary
file in the same folder, is flushed and ``fsync``-ed, atomically renamed onto its final name, and
the folder is ``fsync``-ed too, so that after :meth:`BlobStore.put` returns the bytes survive a
crash of the process or the machine. A reader therefore never sees a partial blob.

A crash between the blob write and the database commit leaves a file no row points to. That is
harmless: the name is the content's hash, so the next upload of the same bytes reuses it, and
nothing ever reads a blob without a row. :meth:`BlobStore.orphans` lists such files.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
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
