"""3D model sets: one document per simulation version (its `_id` is the version's id)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import MeshSet, MeshStage, RenditionState
from core.repositories.base import Repository, opt_oid, opt_str, sync_indexes, to_oid, utcnow


def _from_doc(doc: dict[str, Any]) -> MeshSet:
    superimposition = doc.get("superimposition")
    return MeshSet(
        id=str(doc["_id"]),
        clinicId=str(doc["clinicId"]),
        patientId=str(doc["patientId"]),
        state=RenditionState.coerce(doc["state"]),
        stages=tuple(MeshStage(int(s["stage"]), {arch: str(asset) for arch, asset in s["arches"].items()})
                     for s in doc.get("stages", [])),
        maxMovement=float(doc.get("maxMovement", 0.0)),
        shared=bool(doc.get("shared", True)),
        triangles={k: int(v) for k, v in (doc.get("triangles") or {}).items()},
        sourceTriangles={k: int(v) for k, v in (doc.get("sourceTriangles") or {}).items()},
        axes={k: (float(v[0]), float(v[1]), float(v[2])) for k, v in (doc.get("axes") or {}).items()},
        bounds={k: tuple(int(x) for x in v) for k, v in (doc.get("bounds") or {}).items()},
        ghost={k: str(v) for k, v in (doc.get("ghost") or {}).items()},
        progress=int(doc.get("progress", 0)),
        step=doc.get("step", ""),
        error=doc.get("error"),
        attempts=int(doc.get("attempts", 0)),
        superimposition=RenditionState.coerce(superimposition) if superimposition else None,
        superimpositionId=opt_str(doc.get("superimpositionId")),
        superimpositionError=doc.get("superimpositionError"),
        updatedAt=doc.get("updatedAt"),
    )


class MeshSetRepository(Repository):
    collection_name = "mesh_sets"
    what = "3D model set"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("clinicId", ASCENDING), ("state", ASCENDING)])])

    def _key(self, clinic_id: str, simulation_id: str) -> dict[str, Any]:
        return self._scope(clinic_id, _id=to_oid(simulation_id, "simulation"))

    def get(self, clinic_id: str, simulation_id: str) -> MeshSet | None:
        doc = self._col.find_one(self._key(clinic_id, simulation_id))
        return _from_doc(doc) if doc else None

    def create(self, clinic_id: str, simulation_id: str, *, patient_id: str) -> MeshSet:
        """A PENDING set for the version; the existing one when another request created it first."""
        doc = {"_id": to_oid(simulation_id, "simulation"), "clinicId": to_oid(clinic_id, "clinic"),
               "patientId": to_oid(patient_id, "patient"), "state": RenditionState.PENDING.value, "stages": [],
               "progress": 0, "step": "waiting for the job queue", "error": None, "createdAt": utcnow(),
               "updatedAt": utcnow()}
        try:
            self._col.insert_one(doc)
        except DuplicateKeyError:
            existing = self.get(clinic_id, simulation_id)
            if existing is None:
                raise
            return existing
        return _from_doc(doc)

    def set_state(self, clinic_id: str, simulation_id: str, state: RenditionState, *, progress: int | None = None,
                  step: str | None = None, error: str | None = None,
                  unless_ready: bool = False) -> bool:
        """Move the set to `state`; with `unless_ready`, only while no preparation has completed it (two
        preparations of one set can overlap: a retry after a worker was presumed dead, a maintenance re-queue).
        Whether the set was changed."""
        values: dict[str, Any] = {"state": state.value, "error": error, "updatedAt": utcnow()}
        if progress is not None:
            values["progress"] = progress
        if step is not None:
            values["step"] = step
        key = self._key(clinic_id, simulation_id)
        if unless_ready:  # an equality set, not $ne (the shape the embedded server serves by _id)
            key["state"] = {"$in": [s.value for s in RenditionState if s is not RenditionState.READY]}
        return self._col.update_one(key, {"$set": values}).matched_count == 1

    def mark_queued(self, clinic_id: str, simulation_id: str, *, reset_attempts: bool = False) -> None:
        """A preparation job was queued: state QUEUED, one more attempt (or the first, after a user's retry)."""
        values = {"state": RenditionState.QUEUED.value, "progress": 0, "step": "waiting for a worker", "error": None,
                  "updatedAt": utcnow()}
        update: dict[str, Any] = {"$set": {**values, "attempts": 1}} if reset_attempts else \
            {"$set": values, "$inc": {"attempts": 1}}
        self._col.update_one(self._key(clinic_id, simulation_id), update)

    def report(self, clinic_id: str, simulation_id: str, progress: int, step: str) -> None:
        """Progress of a running preparation (a set already completed by an overlapping one keeps its 'ready')."""
        self._col.update_one({**self._key(clinic_id, simulation_id), "state": RenditionState.RUNNING.value},
                             {"$set": {"progress": progress, "step": step, "updatedAt": utcnow()}})

    def complete(self, clinic_id: str, simulation_id: str, *, stages: list[MeshStage], max_movement: float,
                 shared: bool, triangles: dict[str, int], source_triangles: dict[str, int],
                 axes: dict[str, tuple[float, float, float]], bounds: dict[str, tuple[int, ...]],
                 ghost: dict[str, str]) -> MeshSet:
        values = {"state": RenditionState.READY.value, "progress": 100, "step": "ready", "error": None,
                  "stages": [{"stage": s.stage, "arches": {a: to_oid(i) for a, i in s.arches.items()}} for s in stages],
                  "maxMovement": max_movement, "shared": shared, "triangles": triangles,
                  "sourceTriangles": source_triangles, "axes": {k: list(v) for k, v in axes.items()},
                  "bounds": {k: list(v) for k, v in bounds.items()}, "ghost": {k: to_oid(v) for k, v in ghost.items()},
                  "updatedAt": utcnow()}
        self._col.update_one(self._key(clinic_id, simulation_id), {"$set": values})
        found = self.get(clinic_id, simulation_id)
        assert found is not None
        return found

    def set_superimposition(self, clinic_id: str, simulation_id: str, state: RenditionState | None, *,
                            simulation: str | None = None, error: str | None = None) -> None:
        """Progress of the SUPERIMPOSITION version made from this set (its id once it exists)."""
        self._col.update_one(self._key(clinic_id, simulation_id), {"$set": {
            "superimposition": state.value if state else None, "superimpositionId": opt_oid(simulation),
            "superimpositionError": error, "updatedAt": utcnow()}})

    def in_states(self, clinic_id: str, states: tuple[RenditionState, ...], *, limit: int = 200) -> list[MeshSet]:
        """Sets of the clinic in these states (served by the (clinicId, state) index), for the reconciler."""
        query = self._scope(clinic_id, state={"$in": [s.value for s in states]})
        return [_from_doc(d) for d in self._col.find(query).limit(limit)]
