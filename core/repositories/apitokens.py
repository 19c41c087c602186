"""API tokens: machine credentials an admin makes for a user or a named integration.

Only a hash of the secret is stored. A token reads `tss_<id>_<secret>`: the id finds the record by `_id`
(one indexed look-up), the secret's SHA-256 is compared in constant time. The clear token exists once,
in the answer to `create`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from core.domain import Permission
from core.repositories.base import Repository, sync_indexes, to_oid, utcnow

PREFIX = "tss_"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiToken:
    id: str
    clinicId: str
    userId: str  # the user the token acts as (its permissions never exceed theirs)
    name: str  # who uses it: "Case Presentation Builder", "J. Smith's scanner bridge"
    permissions: frozenset[Permission]
    createdAt: datetime
    createdBy: str
    expiresAt: datetime
    lastUsedAt: datetime | None = None
    revokedAt: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.revokedAt is None and now < self.expiresAt


def split_token(token: str) -> tuple[ObjectId, str] | None:
    """(record id, secret) of a well-formed token, else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    body = token[len(PREFIX):]
    record, _, secret = body.partition("_")
    try:
        return ObjectId(record), secret
    except (InvalidId, TypeError):
        return None


class ApiTokenRepository(Repository):
    collection_name = "api_tokens"
    what = "API token"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("createdAt", DESCENDING)])])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> ApiToken:
        return ApiToken(id=str(doc["_id"]), clinicId=str(doc["clinicId"]), userId=str(doc["userId"]),
                        name=doc["name"], permissions=frozenset(Permission.coerce(p) for p in doc["permissions"]),
                        createdAt=doc["createdAt"], createdBy=str(doc["createdBy"]), expiresAt=doc["expiresAt"],
                        lastUsedAt=doc.get("lastUsedAt"), revokedAt=doc.get("revokedAt"))

    def create(self, clinic_id: str, *, user_id: str, name: str, permissions: frozenset[Permission],
               created_by: str, lifetime: timedelta) -> tuple[str, ApiToken]:
        """A new token: (the clear token, shown once; the record)."""
        record = ObjectId()
        secret = secrets.token_urlsafe(32)
        now = utcnow()
        doc = {"_id": record, "clinicId": to_oid(clinic_id, "clinic"), "userId": to_oid(user_id, "user"),
               "name": name, "permissions": sorted(p.value for p in permissions), "secretHash": _digest(secret),
               "createdAt": now, "createdBy": to_oid(created_by, "user"), "expiresAt": now + lifetime,
               "lastUsedAt": None, "revokedAt": None}
        self._col.insert_one(doc)
        return f"{PREFIX}{record}_{secret}", self._from_doc(doc)

    def verify(self, token: str) -> ApiToken | None:
        """The record of a token whose secret matches (revoked and expired ones included: the caller decides)."""
        parts = split_token(token)
        if parts is None:
            return None
        record, secret = parts
        doc = self._col.find_one({"_id": record})
        if doc is None or not hmac.compare_digest(doc["secretHash"], _digest(secret)):
            return None
        return self._from_doc(doc)

    def list(self, clinic_id: str, *, limit: int = 500) -> list[ApiToken]:
        """The clinic's tokens, newest first (a clinic has a handful; bounded all the same)."""
        docs = self._col.find(self._scope(clinic_id), {"secretHash": 0})
        tokens = sorted((self._from_doc({**d, "secretHash": ""}) for d in docs), key=lambda t: t.createdAt,
                        reverse=True)
        return tokens[:limit]

    def get(self, clinic_id: str, token_id: str) -> ApiToken:
        return self._from_doc(self._find_one(clinic_id, token_id))

    def revoke(self, clinic_id: str, token_id: str) -> ApiToken:
        self._update_by_id(clinic_id, token_id, {"$set": {"revokedAt": utcnow()}}, guard={"revokedAt": None})
        return self.get(clinic_id, token_id)

    def touch(self, token_id: str, at: datetime) -> None:
        self._col.update_one({"_id": to_oid(token_id, self.what)}, {"$set": {"lastUsedAt": at}})
