"""Webhook endpoints (an admin registers one per integration) and the record of every delivery.

The endpoint's signing secret is stored (it is needed to sign each delivery); it is shown to the admin
once, when the endpoint is made. Deliveries carry ids only, never patient data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from core.repositories.base import Repository, sync_indexes, to_oid, utcnow

DELIVERIES = "webhook_deliveries"


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    clinicId: str
    name: str
    url: str
    events: tuple[str, ...]
    enabled: bool
    createdAt: datetime
    secret: str = ""


@dataclass(frozen=True)
class WebhookDelivery:
    id: str
    clinicId: str
    endpointId: str
    event: str
    body: bytes
    state: str  # PENDING | DELIVERED | FAILED
    attempts: int
    createdAt: datetime
    lastStatus: int | None = None
    lastError: str | None = None
    deliveredAt: datetime | None = None


class WebhookRepository(Repository):
    collection_name = "webhooks"
    what = "webhook"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("createdAt", DESCENDING)])])
        sync_indexes(db[DELIVERIES], [
            IndexModel([("clinicId", ASCENDING), ("endpointId", ASCENDING), ("createdAt", DESCENDING)]),
            IndexModel([("clinicId", ASCENDING), ("state", ASCENDING), ("createdAt", ASCENDING)])])

    @staticmethod
    def _endpoint(doc: dict[str, Any]) -> WebhookEndpoint:
        return WebhookEndpoint(id=str(doc["_id"]), clinicId=str(doc["clinicId"]), name=doc["name"], url=doc["url"],
                               events=tuple(doc["events"]), enabled=bool(doc["enabled"]), createdAt=doc["createdAt"],
                               secret=doc.get("secret", ""))

    @staticmethod
    def _delivery(doc: dict[str, Any]) -> WebhookDelivery:
        return WebhookDelivery(id=str(doc["_id"]), clinicId=str(doc["clinicId"]), endpointId=str(doc["endpointId"]),
                               event=doc["event"], body=bytes(doc["body"]), state=doc["state"],
                               attempts=int(doc.get("attempts", 0)), createdAt=doc["createdAt"],
                               lastStatus=doc.get("lastStatus"), lastError=doc.get("lastError"),
                               deliveredAt=doc.get("deliveredAt"))

    # --- endpoints ---------------------------------------------------------------------------------------
    def create(self, clinic_id: str, *, name: str, url: str, events: tuple[str, ...]) -> WebhookEndpoint:
        doc = {"_id": ObjectId(), "clinicId": to_oid(clinic_id, "clinic"), "name": name, "url": url,
               "events": list(events), "enabled": True, "createdAt": utcnow(), "secret": secrets.token_hex(32)}
        self._col.insert_one(doc)
        return self._endpoint(doc)

    def list(self, clinic_id: str) -> list[WebhookEndpoint]:
        """The clinic's endpoints (a handful per clinic), without their secrets."""
        docs = self._col.find(self._scope(clinic_id), {"secret": 0})
        return sorted((self._endpoint(d) for d in docs), key=lambda e: e.createdAt)

    def get(self, clinic_id: str, endpoint_id: str) -> WebhookEndpoint:
        return self._endpoint(self._find_one(clinic_id, endpoint_id))

    def set_enabled(self, clinic_id: str, endpoint_id: str, enabled: bool) -> None:
        self._update_by_id(clinic_id, endpoint_id, {"$set": {"enabled": enabled}})

    # --- deliveries --------------------------------------------------------------------------------------
    def new_delivery(self, clinic_id: str, endpoint_id: str, event: str, body: bytes,
                     delivery_id: ObjectId) -> WebhookDelivery:
        doc = {"_id": delivery_id, "clinicId": to_oid(clinic_id, "clinic"), "endpointId": to_oid(endpoint_id),
               "event": event, "body": body, "state": "PENDING", "attempts": 0, "createdAt": utcnow()}
        self._db[DELIVERIES].insert_one(doc)
        return self._delivery(doc)

    def delivery(self, clinic_id: str, delivery_id: str) -> WebhookDelivery:
        doc = self._db[DELIVERIES].find_one(self._scope(clinic_id, _id=to_oid(delivery_id, "delivery")))
        if doc is None:
            from core.errors import NotFoundError

            raise NotFoundError("No webhook delivery with that id in your clinic.")
        return self._delivery(doc)

    def record_attempt(self, clinic_id: str, delivery_id: str, *, status: int | None, error: str | None,
                       delivered: bool, final: bool = False) -> None:
        state = "DELIVERED" if delivered else ("FAILED" if final else "PENDING")
        now = utcnow()
        self._db[DELIVERIES].update_one(
            # An equality set, not `$ne` (SECANTUS.md): a delivered one is never touched again.
            self._scope(clinic_id, _id=to_oid(delivery_id, "delivery"), state={"$in": ["PENDING", "FAILED"]}),
            {"$set": {"state": state, "lastStatus": status, "lastError": error,
                      **({"deliveredAt": now} if delivered else {}), "lastAttemptAt": now},
             "$inc": {"attempts": 1}})

    def pending(self, clinic_id: str, *, older_than: datetime, since: datetime) -> list[WebhookDelivery]:
        """Deliveries still PENDING, made between `since` and `older_than` (an index-served range)."""
        docs = self._db[DELIVERIES].find({"clinicId": to_oid(clinic_id, "clinic"), "state": "PENDING",
                                          "createdAt": {"$gte": since, "$lt": older_than}}, {"body": 0})
        return [self._delivery({**d, "body": b""}) for d in docs]

    def recent_deliveries(self, clinic_id: str, endpoint_id: str, *, limit: int = 50) -> list[WebhookDelivery]:
        """The endpoint's newest deliveries (a bounded window of the last 30 days)."""
        from datetime import timedelta

        since = utcnow() - timedelta(days=30)
        docs = self._db[DELIVERIES].find({"clinicId": to_oid(clinic_id, "clinic"), "endpointId": to_oid(endpoint_id),
                                          "createdAt": {"$gte": since}})
        return sorted((self._delivery(d) for d in docs), key=lambda d: d.createdAt, reverse=True)[:limit]
