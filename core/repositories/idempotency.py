"""Idempotency keys of API requests: the first request with a key claims it, its answer is kept for a day.

A key is scoped to the API token that sent it (`_id` = token id + SHA-256 of the key), so two clients
cannot see each other's answers. Looked up by `_id` only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.repositories.base import Repository, sync_indexes, to_oid, utcnow

LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class StoredAnswer:
    request_hash: str
    done: bool
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    claimed_at: datetime | None = None


def key_id(token_id: str, key: str) -> str:
    return f"{token_id}:{hashlib.sha256(key.encode()).hexdigest()}"


class IdempotencyRepository(Repository):
    collection_name = "idempotency_keys"
    what = "idempotency key"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("expiresAt", ASCENDING)])])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> StoredAnswer:
        return StoredAnswer(doc["requestHash"], bool(doc.get("done")), int(doc.get("status", 0)),
                            tuple((str(k), str(v)) for k, v in doc.get("headers", [])), bytes(doc.get("body", b"")),
                            doc.get("claimedAt"))

    def claim(self, clinic_id: str, token_id: str, key: str, request_hash: str) -> StoredAnswer | None:
        """Claim the key for this request (None), or the earlier claim / answer stored under it."""
        record = key_id(token_id, key)
        now = utcnow()
        doc = {"_id": record, "clinicId": to_oid(clinic_id, "clinic"), "requestHash": request_hash, "done": False,
               "claimedAt": now, "expiresAt": now + LIFETIME}
        try:
            self._col.insert_one(doc)
            return None
        except DuplicateKeyError:
            existing = self._col.find_one({"_id": record})
        if existing is None:  # released in between: try once more
            return self.claim(clinic_id, token_id, key, request_hash)
        if existing["expiresAt"] <= now:  # a day old: the key may be used afresh
            self._col.delete_one({"_id": record, "expiresAt": existing["expiresAt"]})
            return self.claim(clinic_id, token_id, key, request_hash)
        return self._from_doc(existing)

    def get(self, token_id: str, key: str) -> StoredAnswer | None:
        doc = self._col.find_one({"_id": key_id(token_id, key)})
        return self._from_doc(doc) if doc else None

    def finish(self, token_id: str, key: str, *, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self._col.update_one({"_id": key_id(token_id, key)},
                             {"$set": {"done": True, "status": status, "headers": [list(h) for h in headers],
                                       "body": body}})

    def purge_expired(self, clinic_id: str) -> int:
        """Forget the clinic's keys older than a day (an index-served range; maintenance calls it)."""
        return self._col.delete_many({"clinicId": to_oid(clinic_id, "clinic"),
                                      "expiresAt": {"$lt": utcnow()}}).deleted_count

    def release(self, token_id: str, key: str) -> None:
        """Forget an unfinished claim (the request failed): the same key may be tried again."""
        self._col.delete_one({"_id": key_id(token_id, key), "done": False})
