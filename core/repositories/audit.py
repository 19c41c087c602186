"""Append-only, hash-chained audit trail. No code path updates or deletes an event."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import AuditEvent
from core.errors import ConflictError
from core.repositories.base import Repository, opt_oid, opt_str, to_oid, utcnow

_ATTEMPTS = 50


def event_hash(previous: str, body: dict[str, Any]) -> str:
    """SHA-256 over the previous event's hash and this event's canonical JSON."""
    canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256((previous + canonical).encode()).hexdigest()


def _from_doc(doc: dict[str, Any]) -> AuditEvent:
    return AuditEvent(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        action=doc["action"],
        outcome=doc["outcome"],
        at=doc["at"],
        userId=opt_str(doc.get("userId")),
        role=doc.get("role"),
        patientId=opt_str(doc.get("patientId")),
        simulationId=opt_str(doc.get("simulationId")),
        details=dict(doc.get("details") or {}),
    )


class AuditRepository(Repository):
    collection_name = "audit_events"
    what = "audit event"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes(
            [
                # One successor per event: concurrent appends cannot fork the chain.
                IndexModel([("clinicId", ASCENDING), ("seq", ASCENDING)], unique=True),
                IndexModel([("clinicId", ASCENDING), ("at", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("at", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("simulationId", ASCENDING), ("action", ASCENDING)]),
            ]
        )

    def append(
        self,
        clinic_id: str,
        *,
        action: str,
        outcome: str = "ok",
        user_id: str | None = None,
        role: str | None = None,
        patient_id: str | None = None,
        simulation_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        clinic = to_oid(clinic_id, "clinic")
        for _ in range(_ATTEMPTS):
            last = self._col.find_one({"clinicId": clinic}, sort=[("seq", DESCENDING)],
                                      projection={"seq": 1, "hash": 1})
            body = {
                "clinicId": str(clinic),
                "seq": (last["seq"] + 1) if last else 1,
                "action": action,
                "outcome": outcome,
                "at": utcnow().isoformat(),
                "userId": user_id,
                "role": role,
                "patientId": patient_id,
                "simulationId": simulation_id,
                "details": details or {},
            }
            doc = {
                **body,
                "_id": ObjectId(),
                "clinicId": clinic,
                "at": utcnow(),
                "userId": opt_oid(user_id),
                "patientId": opt_oid(patient_id),
                "simulationId": opt_oid(simulation_id),
                "atIso": body["at"],
                "prevHash": last["hash"] if last else "",
                "hash": event_hash(last["hash"] if last else "", body),
            }
            try:
                self._col.insert_one(doc)
                return _from_doc(doc)
            except DuplicateKeyError:
                continue  # another event took this sequence number; chain onto it
        raise ConflictError("The audit trail is busy; try again.")

    def for_simulation(self, clinic_id: str, simulation_id: str, *, action: str) -> list[AuditEvent]:
        query = self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation"), action=action)
        return [_from_doc(d) for d in self._col.find(query).sort("seq", DESCENDING)]

    def for_simulations(self, clinic_id: str, simulation_ids: list[str], *, actions: tuple[str, ...],
                        limit: int = 200) -> list[AuditEvent]:
        query = self._scope(clinic_id, simulationId={"$in": [to_oid(s, "simulation") for s in simulation_ids]},
                            action={"$in": list(actions)})
        return [_from_doc(d) for d in self._col.find(query).sort("seq", DESCENDING).limit(limit)]

    def verify(self, clinic_id: str) -> list[str]:
        """Problems in the clinic's chain: edited events (hash mismatch), deleted or reordered ones."""
        problems = []
        previous_hash, expected_seq = "", 1
        for doc in self._col.find(self._scope(clinic_id)).sort("seq", ASCENDING):
            body = {
                "clinicId": str(doc["clinicId"]), "seq": doc["seq"], "action": doc["action"],
                "outcome": doc["outcome"], "at": doc["atIso"], "userId": opt_str(doc.get("userId")),
                "role": doc.get("role"), "patientId": opt_str(doc.get("patientId")),
                "simulationId": opt_str(doc.get("simulationId")), "details": doc.get("details") or {},
            }
            if doc["seq"] != expected_seq:
                problems.append(f"event {expected_seq} is missing (next found: {doc['seq']})")
            if doc.get("prevHash") != previous_hash:
                problems.append(f"event {doc['seq']} does not follow the event before it")
            if event_hash(doc.get("prevHash", ""), body) != doc.get("hash"):
                problems.append(f"event {doc['seq']} was altered after it was written")
            previous_hash, expected_seq = doc.get("hash", ""), doc["seq"] + 1
        return problems

    def search(self, clinic_id: str, *, user_id: str | None = None, patient_id: str | None = None,
               action: str | None = None, since: datetime | None = None, until: datetime | None = None,
               limit: int = 1000) -> list[AuditEvent]:
        query = self._scope(clinic_id)
        if user_id:
            query["userId"] = to_oid(user_id, "user")
        if patient_id:
            query["patientId"] = to_oid(patient_id, "patient")
        if action:
            query["action"] = action
        if since or until:
            query["at"] = {k: v for k, v in (("$gte", since), ("$lt", until)) if v}
        return [_from_doc(d) for d in self._col.find(query).sort("seq", DESCENDING).limit(limit)]

    def list(self, clinic_id: str, *, limit: int = 200) -> list[AuditEvent]:
        cursor = self._col.find(self._scope(clinic_id)).sort("seq", DESCENDING).limit(limit)
        return [_from_doc(d) for d in cursor]
