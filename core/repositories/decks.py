"""Case presentation decks of a clinic."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.database import Database

from core.domain import Deck, DeckSlide
from core.errors import ConflictError
from core.repositories.base import Page, Repository, sync_indexes, to_oid, utcnow


def _slide_doc(slide: DeckSlide) -> dict[str, Any]:
    return dict(slide.__dict__)


def _from_doc(doc: dict[str, Any]) -> Deck:
    return Deck(id=str(doc["_id"]), clinicId=str(doc["clinicId"]), patientId=str(doc["patientId"]),
                template=doc["template"], name=doc["name"],
                slides=tuple(DeckSlide(**s) for s in doc.get("slides", [])),
                usedVersions={k: int(v) for k, v in (doc.get("usedVersions") or {}).items()},
                createdBy=str(doc["createdBy"]), createdAt=doc["createdAt"], updatedAt=doc["updatedAt"],
                revision=int(doc.get("revision", 0)))


class DeckRepository(Repository):
    collection_name = "decks"
    what = "deck"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name],
                     [IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("updatedAt", DESCENDING)])])

    def create(self, clinic_id: str, *, patient_id: str, template: str, name: str, slides: list[DeckSlide],
               used_versions: dict[str, int], created_by: str) -> Deck:
        now = utcnow()
        doc = {"_id": ObjectId(), "clinicId": to_oid(clinic_id, "clinic"), "patientId": to_oid(patient_id, "patient"),
               "template": template, "name": name, "slides": [_slide_doc(s) for s in slides],
               "usedVersions": used_versions, "createdBy": to_oid(created_by, "user"), "createdAt": now,
               "updatedAt": now, "revision": 0}
        self._col.insert_one(doc)
        return _from_doc(doc)

    def get(self, clinic_id: str, deck_id: str) -> Deck:
        return _from_doc(self._find_one(clinic_id, deck_id))

    def list_for_patient(self, clinic_id: str, patient_id: str, *, limit: int = 50,
                         cursor: str | None = None) -> Page[Deck]:
        """A patient's decks, most recently changed first (a page)."""
        docs, next_cursor = self._page(self._scope(clinic_id, patientId=to_oid(patient_id, "patient")), "updatedAt",
                                       limit=limit, cursor=cursor, span=timedelta(days=365))
        return Page(tuple(_from_doc(d) for d in docs), next_cursor)

    def update(self, clinic_id: str, deck_id: str, *, expected_revision: int, name: str, slides: list[DeckSlide],
               used_versions: dict[str, int]) -> Deck:
        doc = self._update_by_id(
            clinic_id, deck_id,
            {"$set": {"name": name, "slides": [_slide_doc(s) for s in slides], "usedVersions": used_versions,
                      "updatedAt": utcnow()}, "$inc": {"revision": 1}}, guard={"revision": expected_revision})
        if doc is None:
            self.get(clinic_id, deck_id)
            raise ConflictError("Someone else changed this deck meanwhile; reload it and try again.")
        return _from_doc(doc)
