"""Asset stores: content addressing, atomic writes, both backends."""

from __future__ import annotations

import hashlib

import pytest

from core.errors import NotFoundError
from core.storage import FileAssetStore, GridFSAssetStore


@pytest.fixture(params=["files", "gridfs"])
def store(request, infra, tmp_path):
    return FileAssetStore(tmp_path / "assets") if request.param == "files" else GridFSAssetStore(infra.db)


def test_blobs_are_named_by_sha256_and_read_back(store):
    data = b"\x89PNG fake frame bytes" * 100
    blob = store.put(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data)
    assert store.get(blob.sha256) == data
    assert store.put(data) == blob  # same content, same key, stored once


def test_a_missing_or_malformed_key_is_not_found(store):
    with pytest.raises(NotFoundError):
        store.get("0" * 64)
    with pytest.raises(NotFoundError):
        store.get("../../etc/passwd")


def test_delete_removes_the_blob(store):
    blob = store.put(b"temporary")
    store.delete(blob.sha256)
    assert not store.exists(blob.sha256)


def test_file_store_leaves_no_temp_file_and_no_half_file_when_a_write_fails(tmp_path, monkeypatch):
    store = FileAssetStore(tmp_path / "assets")
    import os

    def broken_fsync(_fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    data = b"frame" * 1000
    with pytest.raises(OSError, match="disk full"):
        store.put(data)
    assert store.temp_files() == []
    assert not store.exists(hashlib.sha256(data).hexdigest())
    assert [p for p in (tmp_path / "assets").rglob("*") if p.is_file()] == []
