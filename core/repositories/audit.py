"""Append-only, keyed hash chain of audit events per clinic. No code path updates or deletes an event.

Each event stores `prevHash` and `hash = HMAC(key, canonical(every other stored field))`, so editing,
adding or removing any field, or re-hashing the chain, needs the server's key. A per-clinic chain head
(`audit_heads`: last `seq` and hash, HMAC'd) is updated in the same transaction as each append, by a
compare-and-set on `{_id, seq}`: appends are O(1) and concurrent ones still form one gap-free chain,
and verification detects truncation (the head names events that are gone) and wholesale deletion (a
clinic without a head). Verification streams the chain in `seq` windows from an index and can resume
from a verified checkpoint (`audit_checkpoints`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import bson
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import AuditEvent
from core.errors import ConflictError
from core.keys import Keyring
from core.repositories.base import Page, Repository, opt_oid, opt_str, sync_indexes, to_oid, utcnow

_ATTEMPTS = 60
_HEADS = "audit_heads"
_CHECKPOINTS = "audit_checkpoints"
#: Events read per window while verifying.
VERIFY_WINDOW = 5000
#: Verification reports at most this many problems per clinic (a wiped trail would otherwise list them all).
MAX_PROBLEMS = 50
#: Fields an event stores; a stored document with any other field was altered.
EVENT_FIELDS = frozenset({"_id", "clinicId", "seq", "action", "outcome", "at", "userId", "role", "patientId",
                          "simulationId", "details", "prevHash", "keyId", "hash"})
#: Indexed filters of `search`, each the leading key after clinicId of an index ending in `seq`.
_FILTER_INDEXES = ("action", "userId", "patientId")


#: Value types stored as they are (no keys to sort inside): skipped without a call when signing.
_LEAVES = frozenset({str, int, float, bool, type(None), datetime, ObjectId, bytes})


def _sorted(value: Any, without: str | None = None) -> Any:
    """`value` with the keys of every mapping in it sorted (and `without` left out at the top level).

    Verifying a trail calls this once per event: leaves are copied without a call (most fields are)."""
    if isinstance(value, Mapping):
        keys = sorted(value, key=str)
        return {str(k): (v if type(v := value[k]) in _LEAVES else _sorted(v)) for k in keys if k != without}
    if isinstance(value, list | tuple):
        return [v if type(v) in _LEAVES else _sorted(v) for v in value]
    return value


def canonical_bytes(doc: Mapping[str, Any], *, without: str | None = None) -> bytes:
    """The signed form of a stored document: BSON with keys sorted at every level (`without`: a
    top-level field left out, e.g. the signature itself).

    BSON keeps each value's type (an ObjectId is not its hex string, a date not its text), and the
    sorted keys make the bytes independent of the order a database returns the fields in.
    """
    return bson.encode(_sorted(doc, without))


def _legacy_hash(doc: Mapping[str, Any]) -> str:
    """The unkeyed scheme of events written before the keyed chain (kept to verify old trails)."""
    body = {"clinicId": str(doc["clinicId"]), "seq": doc["seq"], "action": doc["action"], "outcome": doc["outcome"],
            "at": doc.get("atIso"), "userId": opt_str(doc.get("userId")), "role": doc.get("role"),
            "patientId": opt_str(doc.get("patientId")), "simulationId": opt_str(doc.get("simulationId")),
            "details": doc.get("details") or {}}
    text = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256((doc.get("prevHash", "") + text).encode()).hexdigest()


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
        seq=int(doc["seq"]),
    )


@dataclass(frozen=True)
class VerifyReport:
    """What one clinic's verification found."""

    clinic_id: str
    checked: int  # events read
    first_seq: int  # the first event checked (after the checkpoint when resuming)
    last_seq: int  # the head's sequence number
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems


class AuditRepository(Repository):
    collection_name = "audit_events"
    what = "audit event"

    def __init__(self, db: Database, keys: Keyring) -> None:
        super().__init__(db)
        self._keys = keys
        self._heads = db[_HEADS]
        self._checkpoints = db[_CHECKPOINTS]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [
                # One successor per event: concurrent appends cannot fork the chain.
                IndexModel([("clinicId", ASCENDING), ("seq", ASCENDING)], unique=True),
                IndexModel([("clinicId", ASCENDING), ("at", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("seq", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("userId", ASCENDING), ("seq", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("action", ASCENDING), ("seq", DESCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("simulationId", ASCENDING), ("action", ASCENDING)]),
            ],
            obsolete=("clinicId_1_patientId_1_at_-1",),
        )

    # --- the chain -----------------------------------------------------------------------------------
    def _sign_event(self, doc: dict[str, Any]) -> str:
        return self._keys.sign(canonical_bytes({k: v for k, v in doc.items() if k != "hash"}), doc["keyId"])

    def _head_message(self, head: Mapping[str, Any]) -> bytes:
        return canonical_bytes({"clinicId": head["clinicId"], "seq": head["seq"], "hash": head["hash"],
                                "keyId": head["keyId"], "kind": head.get("kind", "head")})

    def _signed_marker(self, clinic: ObjectId, seq: int, last_hash: str, kind: str) -> dict[str, Any]:
        marker = {"_id": clinic, "clinicId": clinic, "seq": seq, "hash": last_hash, "keyId": self._keys.current,
                  "kind": kind}
        marker["mac"] = self._keys.sign(self._head_message(marker))
        return marker

    def start_chain(self, clinic_id: str, *, seq: int = 0, last_hash: str = "") -> None:
        """Create a clinic's chain head: empty when the clinic is created, or after a bulk-loaded trail
        (fixtures, restores). Never moves an existing head."""
        clinic = to_oid(clinic_id, "clinic")
        marker = {**self._signed_marker(clinic, seq, last_hash, "head"), "updatedAt": utcnow()}
        with contextlib.suppress(DuplicateKeyError):  # it exists: nothing to start
            self._heads.insert_one(marker)

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
        """Append one event in O(1): read the head, insert seq+1, move the head (one transaction)."""
        clinic = to_oid(clinic_id, "clinic")
        fields = {"action": action, "outcome": outcome, "userId": opt_oid(user_id), "role": role,
                  "patientId": opt_oid(patient_id), "simulationId": opt_oid(simulation_id),
                  "details": dict(details or {})}
        doc = self._in_transaction(lambda s: self._append_in(s, clinic, fields), attempts=_ATTEMPTS,
                                   busy="The audit trail is busy; try again.",
                                   conflicts=(DuplicateKeyError, ConflictError), pause=0.002)
        return _from_doc(doc)

    def append_many(self, clinic_id: str, events: list[dict[str, Any]]) -> int:
        """Append several events (keyword arguments of `append`) as consecutive links, in one transaction.

        For high-rate records such as API calls: one head move per batch instead of one per event.
        """
        if not events:
            return 0
        clinic = to_oid(clinic_id, "clinic")
        batch = [{"action": e["action"], "outcome": e.get("outcome", "ok"), "userId": opt_oid(e.get("user_id")),
                  "role": e.get("role"), "patientId": opt_oid(e.get("patient_id")),
                  "simulationId": opt_oid(e.get("simulation_id")), "details": dict(e.get("details") or {})}
                 for e in events]
        self._in_transaction(lambda s: self._append_in(s, clinic, *batch), attempts=_ATTEMPTS,
                             busy="The audit trail is busy; try again.", conflicts=(DuplicateKeyError, ConflictError),
                             pause=0.002)
        return len(batch)

    def _append_in(self, session: ClientSession, clinic: ObjectId, *batch: dict[str, Any]) -> dict[str, Any]:
        head = self._heads.find_one({"_id": clinic}, session=session)
        seq, previous = (int(head["seq"]), str(head["hash"])) if head else (0, "")
        docs = []
        at = utcnow()
        for fields in batch:
            doc = {"_id": ObjectId(), "clinicId": clinic, "seq": seq + len(docs) + 1, **fields, "at": at,
                   "prevHash": previous, "keyId": self._keys.current}
            doc["hash"] = previous = self._sign_event(doc)
            docs.append(doc)
        if len(docs) == 1:
            self._col.insert_one(docs[0], session=session)
        else:
            self._col.insert_many(docs, session=session)
        doc = docs[-1]
        marker = {**self._signed_marker(clinic, doc["seq"], doc["hash"], "head"), "updatedAt": doc["at"]}
        if head is None:
            self._heads.insert_one(marker, session=session)
        elif self._heads.update_one({"_id": clinic, "seq": seq}, {"$set": marker},
                                    session=session).matched_count != 1:
            raise ConflictError("the chain head moved")
        return doc

    def adopt_legacy_chain(self, clinic_id: str) -> int:
        """Migration: a head for a clinic whose trail predates chain heads (1 if one was made).

        Events written before keys existed keep their unkeyed hashes (verified as such); new events
        chain onto the last of them, and from now on truncation and deletion are detected.
        """
        clinic = to_oid(clinic_id, "clinic")
        if self._heads.find_one({"_id": clinic}, {"_id": 1}) is not None:
            return 0
        last = max(self._col.find({"clinicId": clinic}, {"seq": 1, "hash": 1}), key=lambda d: d["seq"], default=None)
        marker = {**self._signed_marker(clinic, int(last["seq"]) if last else 0, str(last["hash"]) if last else "",
                                        "head"), "updatedAt": utcnow()}
        with contextlib.suppress(DuplicateKeyError):
            self._heads.insert_one(marker)
            return 1
        return 0

    def head_seq(self, clinic_id: str) -> int:
        head = self._heads.find_one({"_id": to_oid(clinic_id, "clinic")}, {"seq": 1})
        return int(head["seq"]) if head else 0

    # --- verification ------------------------------------------------------------------------------
    def verify(self, clinic_id: str, *, from_checkpoint: bool = False) -> VerifyReport:
        """Check the clinic's chain against its keyed hashes and its head.

        With `from_checkpoint`, start after the last verified checkpoint (when it is still valid); a
        clean run moves the checkpoint to the head. The CLI verifies everything by default.
        """
        clinic = to_oid(clinic_id, "clinic")
        problems: list[str] = []
        head = self._heads.find_one({"_id": clinic})
        if head is None:
            last = self._col.find_one({"clinicId": clinic, "seq": 1}, {"_id": 1})
            problems.append("the chain head is missing: the trail was deleted" if last is not None
                            else "the chain head is missing: the clinic's whole trail was deleted")
            return VerifyReport(str(clinic), 0, 1, 0, tuple(problems))
        if not self._keys.verify(self._head_message(head), str(head.get("mac", "")), str(head.get("keyId"))):
            problems.append("the chain head was altered (its signature does not match)")
        head_seq, head_hash = int(head["seq"]), str(head["hash"])

        start_seq, previous = 1, ""
        if from_checkpoint:
            start_seq, previous = self._resume_point(clinic, head_seq)
        checked = 0
        expected = start_seq
        for doc in self._stream(clinic, start_seq, head_seq):
            checked += 1
            seq = int(doc.get("seq", -1))
            if seq > head_seq:
                problems.append(f"event {seq} lies beyond the chain head ({head_seq}): written outside the app")
                break
            if seq != expected:
                problems.append(f"event {expected} is missing" if seq == expected + 1
                                else f"events {expected}–{seq - 1} are missing")
            problems.extend(self._check_event(doc, previous))
            previous, expected = str(doc.get("hash", "")), seq + 1
            if len(problems) >= MAX_PROBLEMS:
                problems.append("… and possibly more (stopped after the first problems)")
                break
        else:
            if expected <= head_seq:
                problems.append(f"events {expected}–{head_seq} are missing (the trail was cut short)"
                                if expected < head_seq else f"event {head_seq} is missing (the trail was cut short)")
            elif head_seq and previous != head_hash:
                problems.append(f"event {head_seq} does not match the chain head")
        if not problems and head_seq:
            self._checkpoints.replace_one(
                {"_id": clinic}, {**self._signed_marker(clinic, head_seq, head_hash, "checkpoint"),
                                  "verifiedAt": utcnow()}, upsert=True)
        return VerifyReport(str(clinic), checked, start_seq, head_seq, tuple(problems))

    def _resume_point(self, clinic: ObjectId, head_seq: int) -> tuple[int, str]:
        """(first seq to check, hash before it) from a valid checkpoint; (1, "") without one."""
        point = self._checkpoints.find_one({"_id": clinic})
        if point is None or not self._keys.verify(self._head_message(point), str(point.get("mac", "")),
                                                  str(point.get("keyId"))):
            return 1, ""
        seq = int(point["seq"])
        event = self._col.find_one({"clinicId": clinic, "seq": seq}, {"hash": 1})
        if seq > head_seq or event is None or event.get("hash") != point["hash"]:
            return 1, ""  # the checkpointed event changed: verify everything
        return seq + 1, str(point["hash"])

    def _check_event(self, doc: dict[str, Any], previous: str) -> list[str]:
        seq = doc.get("seq")
        problems = []
        extra = set(doc) - EVENT_FIELDS - ({"atIso"} if "keyId" not in doc else set())
        if extra:
            problems.append(f"event {seq} has fields it was not written with ({', '.join(sorted(extra))})")
        if doc.get("prevHash") != previous:
            problems.append(f"event {seq} does not follow the event before it")
        if "keyId" not in doc:
            if _legacy_hash(doc) != doc.get("hash"):
                problems.append(f"event {seq} was altered after it was written")
        elif doc["keyId"] not in self._keys.keys:
            problems.append(f"event {seq} is signed with key {str(doc['keyId'])[:40]!r}, which this server does "
                            "not have (see AUDIT_KEYS)")
        elif not self._keys.verify(canonical_bytes(doc, without="hash"),
                                   str(doc.get("hash", "")), doc["keyId"]):
            problems.append(f"event {seq} was altered after it was written")
        return problems

    def _stream(self, clinic: ObjectId, start_seq: int, head_seq: int) -> Iterator[dict[str, Any]]:
        """Events from `start_seq` to one window past the head, in seq order, one index window at a time.

        Two threads fetch the next windows while the caller checks the current one, so the database
        produces one window while this process decodes another and checks a third (measured on the
        1M-event trail: one fetcher left the database idle while its answer was decoded).
        """
        lows = iter(range(start_seq, head_seq + 2, VERIFY_WINDOW))

        def fetch(low: int) -> list[dict[str, Any]]:
            docs = list(self._col.find({"clinicId": clinic, "seq": {"$gte": low, "$lt": low + VERIFY_WINDOW}},
                                       batch_size=VERIFY_WINDOW))
            docs.sort(key=lambda d: d["seq"])
            return docs

        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="audit-verify-fetch")
        ahead: deque[Future[list[dict[str, Any]]]] = deque(pool.submit(fetch, low) for low in itertools.islice(lows, 3))
        try:
            while ahead:
                window = ahead.popleft().result()
                if (low := next(lows, None)) is not None:
                    ahead.append(pool.submit(fetch, low))
                yield from window
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    # --- reading -------------------------------------------------------------------------------------
    def page(self, clinic_id: str, *, user_id: str | None = None, patient_id: str | None = None,
             action: str | None = None, since: datetime | None = None, until: datetime | None = None,
             limit: int = 200, cursor: str | None = None) -> Page[AuditEvent]:
        """Events newest first, filtered; each page reads about what it shows (keyset on `seq`)."""
        scope = self._scope(clinic_id)
        clinic = scope["clinicId"]
        filters = {"action": action, "userId": opt_oid(user_id) if user_id else None,
                   "patientId": opt_oid(patient_id) if patient_id else None}
        filters = {k: v for k, v in filters.items() if v is not None}
        high = self.head_seq(clinic_id)
        low = 1
        if until is not None:
            high = min(high, self._seq_before(clinic, until))
        if since is not None:
            low = self._seq_from(clinic, since, high)
        if high < low:
            return Page(())
        lead = next((k for k in _FILTER_INDEXES if k in filters), None)
        match = {**scope, **({lead: filters[lead]} if lead else {})}
        post = {k: v for k, v in filters.items() if k != lead}
        if since is not None or until is not None:
            post["at"] = {k: v for k, v in (("$gte", since), ("$lt", until)) if v is not None}
        # Without a filtering index every seq in [low, high] is a candidate (dates only trim the edges):
        # the first window is the page itself. A filter's events are sparser: start wider.
        docs, next_cursor = self._page(match, "seq", limit=limit, cursor=cursor, start=high, stop=low,
                                       span=limit if lead is None and set(post) <= {"at"} else max(limit, 500),
                                       post=post or None)
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)

    def _seq_before(self, clinic: ObjectId, until: datetime) -> int:
        """The last seq written before `until` (0 when none)."""
        docs, _ = self._page({"clinicId": clinic}, "at", limit=1, start=until - timedelta(milliseconds=1),
                             span=timedelta(hours=1), projection={"seq": 1})
        return int(docs[0]["seq"]) if docs else 0

    def _seq_from(self, clinic: ObjectId, since: datetime, high: int) -> int:
        """The first seq written at or after `since` (beyond `high` when none)."""
        docs, _ = self._page({"clinicId": clinic}, "at", limit=1, descending=False, start=since,
                             span=timedelta(hours=1), projection={"seq": 1})
        return int(docs[0]["seq"]) if docs else high + 1

    def list(self, clinic_id: str, *, limit: int = 200) -> Page[AuditEvent]:
        return self.page(clinic_id, limit=limit)

    def for_simulation(self, clinic_id: str, simulation_id: str, *, action: str) -> list[AuditEvent]:
        query = self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation"), action=action)
        return sorted((_from_doc(d) for d in self._col.find(query)), key=lambda e: e.seq, reverse=True)

    def for_simulations(self, clinic_id: str, simulation_ids: list[str], *, actions: tuple[str, ...],
                        limit: int = 200) -> list[AuditEvent]:
        """Events of these actions on these versions, newest first: one indexed query per version."""
        events: list[AuditEvent] = []
        for simulation_id in simulation_ids:
            query = self._scope(clinic_id, simulationId=to_oid(simulation_id, "simulation"),
                                action={"$in": list(actions)})
            events.extend(_from_doc(d) for d in self._col.find(query))
        events.sort(key=lambda e: e.seq, reverse=True)
        return events[:limit]

    def get(self, clinic_id: str, event_id: str) -> AuditEvent:
        return _from_doc(self._find_one(clinic_id, event_id))
