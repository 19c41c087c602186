"""Content-addressed blob storage behind one interface, with a filesystem and a GridFS backend.

Blobs are named by their SHA-256, never by an uploaded file name, so no patient data reaches a
file name. Writes are atomic: a crash leaves either the whole blob or nothing that looks valid.

Deleting is the subtle part: two writers of identical bytes share one blob, and a writer puts the
blob before it records a reference to it. So `put` of a blob that exists marks it as just written
(its time), and `delete_unreferenced` removes a blob only when nothing refers to it *and* no writer
put it within a grace period — checked again after the blob was moved aside, so a writer that
arrives in between either sees it restored or writes it afresh. `core.blobs` is the one caller.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import gridfs
from pymongo.database import Database

from core.config import Settings
from core.errors import NotFoundError, StorageFullError, is_disk_full


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

    def delete_unreferenced(self, sha256: str, *, grace_seconds: float, referenced: Callable[[], bool]) -> bool:
        """Delete the blob if `referenced()` is False and nobody put it within `grace_seconds`; True if deleted."""
        ...

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
        try:
            os.utime(path)  # already stored: mark it as just written (a writer is about to refer to it)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="blob-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException as exc:
                Path(tmp).unlink(missing_ok=True)
                if is_disk_full(exc):
                    raise StorageFullError() from exc
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

    def delete_unreferenced(self, sha256: str, *, grace_seconds: float, referenced: Callable[[], bool]) -> bool:
        path = self._path(sha256)

        def fresh(p: Path) -> bool:
            return time.time() - p.stat().st_mtime < grace_seconds

        try:
            if fresh(path) or referenced():
                return False
            aside = self._tmp / f"gc-{sha256}-{uuid.uuid4().hex[:8]}"
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        # A writer between the checks and the move either touched the blob (fresh) and then records it,
        # or finds it gone and writes it again: look once more, and put it back if anyone wants it.
        if fresh(aside) or referenced():
            os.replace(aside, path)  # identical bytes if a writer stored it meanwhile
            return False
        aside.unlink(missing_ok=True)
        return True

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
        touched = self._files.update_many({"filename": digest}, {"$set": {"metadata.touchedAt": datetime.now(UTC)}})
        if not touched.matched_count:
            self._bucket.upload_from_stream(digest, data, metadata={"sha256": digest,
                                                                    "touchedAt": datetime.now(UTC)})
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

    def delete_unreferenced(self, sha256: str, *, grace_seconds: float, referenced: Callable[[], bool]) -> bool:
        name = _check_key(sha256)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)

        def fresh(filename: str) -> bool:
            docs = list(self._files.find({"filename": filename}, {"uploadDate": 1, "metadata.touchedAt": 1}))
            return any(_aware((d.get("metadata") or {}).get("touchedAt") or d["uploadDate"]) >= cutoff for d in docs)

        docs = list(self._files.find({"filename": name}, projection={"_id": 1}))
        if not docs or fresh(name) or referenced():
            return False
        aside = f"gc-{name}-{uuid.uuid4().hex[:8]}"
        for doc in docs:  # moved aside: a writer arriving now uploads it afresh
            self._bucket.rename(doc["_id"], aside)
        if fresh(aside) or referenced():
            for doc in docs:
                self._bucket.rename(doc["_id"], name)
            return False
        for doc in docs:
            self._bucket.delete(doc["_id"])
        return True

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        for doc in self._files.find({"uploadDate": {"$lt": cutoff}}, projection={"filename": 1}):
            yield doc["filename"]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_asset_store(settings: Settings, db: Database) -> AssetStore:
    if settings.asset_store == "gridfs":
        return GridFSAssetStore(db)
    return FileAssetStore(settings.data_dir / "assets")
