"""Shared plumbing for repositories: id conversion and clinic scoping."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.collection import Collection
from pymongo.database import Database

from core.errors import NotFoundError


def utcnow() -> datetime:
    """Now in UTC, truncated to milliseconds (what BSON datetimes keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_oid(value: str | ObjectId, what: str = "record") -> ObjectId:
    """Turn an id from the outside into an ObjectId; a malformed id is simply not found."""
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError) as exc:
        raise NotFoundError(f"No {what} with id {value!r}.") from exc


def opt_oid(value: str | ObjectId | None) -> ObjectId | None:
    return None if value in (None, "") else to_oid(value)


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


class Repository:
    """One repository per collection. Every query is scoped by the caller's clinic id."""

    collection_name: ClassVar[str]
    what: ClassVar[str] = "record"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._col: Collection = db[self.collection_name]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _scope(self, clinic_id: str, **filters: Any) -> dict[str, Any]:
        return {"clinicId": to_oid(clinic_id, "clinic"), **filters}

    def _find_one(self, clinic_id: str, record_id: str) -> dict[str, Any]:
        doc = self._col.find_one(self._scope(clinic_id, _id=to_oid(record_id, self.what)))
        if doc is None:
            raise NotFoundError(f"No {self.what} with id {record_id} in your clinic.")
        return doc
