"""Content-addressed blob storage behind one interface, with a filesystem and a GridFS backend.

Blobs are named by their SHA-256, never by an uploaded file name, so no patient data reaches a
file name. Writes are atomic: a crash leaves either the whole blob or nothing that looks valid.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import gridfs
from pymongo.database import Database

from core.config import Settings
from core.errors import NotFoundError


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_key(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFoundError("No stored file with that key.")
    return sha256


class AssetStore(Protocol):
    """Where asset bytes live. Keys are SHA-256 hex digests of the content."""

    def put(self, data: bytes) -> StoredBlob: ...

    def get(self, sha256: str) -> bytes: ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> None: ...

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Blobs written more than `seconds` ago (for garbage collection of unreferenced blobs)."""
        ...


class FileAssetStore:
    """Blobs under `root/ab/cd/<sha256>`; written to a temp file, fsynced, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)

    def _path(self, sha256: str) -> Path:
        key = _check_key(sha256)
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> StoredBlob:
        digest = sha256_of(data)
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return StoredBlob(digest, len(data))

    def get(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError("The stored file is missing from the asset store.") from exc

    def exists(self, sha256: str) -> bool:
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> None:
        self._path(sha256).unlink(missing_ok=True)

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        cutoff = time.time() - seconds
        for path in self.root.glob("??/??/*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                yield path.name

    def temp_files(self) -> list[Path]:
        """Leftover temp files (a crash mid-write); tests assert there are none."""
        return list(self._tmp.iterdir())


class GridFSAssetStore:
    """Blobs in GridFS (bucket `assets`), for several app/worker machines sharing one MongoDB.

    GridFS writes chunks first and the file document last, so a crash mid-upload leaves no file
    that can be read; orphaned chunks are removed on the next put of the same content.
    """

    def __init__(self, db: Database) -> None:
        self._bucket = gridfs.GridFSBucket(db, bucket_name="assets")
        self._files = db["assets.files"]
        self._files.create_index("filename")

    def put(self, data: bytes) -> StoredBlob:
        digest = sha256_of(data)
        if not self.exists(digest):
            self._bucket.upload_from_stream(digest, data, metadata={"sha256": digest})
        return StoredBlob(digest, len(data))

    def get(self, sha256: str) -> bytes:
        try:
            return self._bucket.open_download_stream_by_name(_check_key(sha256)).read()
        except gridfs.errors.NoFile as exc:
            raise NotFoundError("The stored file is missing from the asset store.") from exc

    def exists(self, sha256: str) -> bool:
        return self._files.find_one({"filename": _check_key(sha256)}, projection={"_id": 1}) is not None

    def delete(self, sha256: str) -> None:
        for doc in self._files.find({"filename": _check_key(sha256)}, projection={"_id": 1}):
            self._bucket.delete(doc["_id"])

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        for doc in self._files.find({"uploadDate": {"$lt": cutoff}}, projection={"filename": 1}):
            yield doc["filename"]


def build_asset_store(settings: Settings, db: Database) -> AssetStore:
    if settings.asset_store == "gridfs":
        return GridFSAssetStore(db)
    return FileAssetStore(settings.data_dir / "assets")
