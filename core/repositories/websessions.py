"""Browser sessions behind an HttpOnly cookie, and the one-time tickets that start them.

Only hashes are stored: a ticket's code and a session's cookie secret never reach the database, so
reading it does not let anyone act as a signed-in user. Both are looked up by `_id` (the hash).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database

from core.repositories.base import Repository, sync_indexes, to_oid, utcnow

TICKETS = "signin_tickets"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class WebSession:
    id: str  # the hash of the cookie secret
    userId: str
    clinicId: str
    method: str
    createdAt: datetime
    lastSeenAt: datetime
    expiresAt: datetime
    revokedAt: datetime | None = None


class WebSessionRepository(Repository):
    collection_name = "web_sessions"
    what = "session"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        # Expired sessions and tickets are removed by the server's TTL monitor (MongoDB) or stay inert.
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("userId", ASCENDING)])])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> WebSession:
        return WebSession(id=doc["_id"], userId=str(doc["userId"]), clinicId=str(doc["clinicId"]),
                          method=doc.get("method", ""), createdAt=doc["createdAt"], lastSeenAt=doc["lastSeenAt"],
                          expiresAt=doc["expiresAt"], revokedAt=doc.get("revokedAt"))

    # --- tickets: a signed-in page hands the browser one, the browser trades it for the cookie -------------
    def issue_ticket(self, clinic_id: str, user_id: str, *, method: str, ttl: timedelta) -> str:
        code = secrets.token_urlsafe(32)
        self._db[TICKETS].insert_one({"_id": digest(code), "clinicId": to_oid(clinic_id, "clinic"),
                                      "userId": to_oid(user_id, "user"), "method": method, "used": False,
                                      "expiresAt": utcnow() + ttl})
        return code

    def redeem(self, code: str, *, lifetime: timedelta) -> tuple[str, WebSession] | None:
        """Trade an unused, unexpired ticket for a new session; (cookie secret, session) or None."""
        key = digest(code)
        now = utcnow()
        if self._db[TICKETS].update_one({"_id": key, "used": False, "expiresAt": {"$gt": now}},
                                        {"$set": {"used": True, "usedAt": now}}).matched_count != 1:
            return None
        ticket = self._db[TICKETS].find_one({"_id": key})
        if ticket is None:
            return None
        secret = secrets.token_urlsafe(32)
        doc = {"_id": digest(secret), "clinicId": ticket["clinicId"], "userId": ticket["userId"],
               "method": ticket.get("method", ""), "createdAt": now, "lastSeenAt": now, "expiresAt": now + lifetime,
               "revokedAt": None}
        self._col.insert_one(doc)
        return secret, self._from_doc(doc)

    # --- sessions ------------------------------------------------------------------------------------------
    def find(self, secret: str) -> WebSession | None:
        """The session a cookie names (revoked or expired ones included: the caller decides)."""
        if not secret or len(secret) > 200:
            return None
        doc = self._col.find_one({"_id": digest(secret)})
        return self._from_doc(doc) if doc else None

    def get(self, session_id: str) -> WebSession | None:
        doc = self._col.find_one({"_id": session_id}) if isinstance(session_id, str) and len(session_id) == 64 else None
        return self._from_doc(doc) if doc else None

    def touch(self, session_id: str, at: datetime) -> None:
        self._col.update_one({"_id": session_id, "revokedAt": None}, {"$set": {"lastSeenAt": at}})

    def revoke(self, session_id: str, *, reason: str) -> bool:
        return self._col.update_one({"_id": session_id, "revokedAt": None},
                                    {"$set": {"revokedAt": utcnow(), "revokedFor": reason}}).modified_count == 1
