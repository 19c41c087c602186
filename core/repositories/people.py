"""Clinics, users, patients and treatments: the neighbouring modules the simulations depend on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import Clinic, Patient, PatientNames, Role, Treatment, User
from core.errors import ConflictError, NotFoundError
from core.repositories.base import Page, Repository, prefix_end, sync_indexes, to_oid, utcnow


class ClinicRepository(Repository):
    collection_name = "clinics"
    what = "clinic"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(db[cls.collection_name], [IndexModel([("slug", ASCENDING)], unique=True)])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Clinic:
        return Clinic(
            id=str(doc["_id"]),
            name=doc["name"],
            slug=doc["slug"],
            patientNames=PatientNames.coerce(doc["patientNames"]) if doc.get("patientNames") else
            (PatientNames.FULL if doc.get("showPatientNames") else PatientNames.INITIALS),  # older records
            createdAt=doc.get("createdAt"),
            primaryColor=doc.get("primaryColor", "#0f766e"),
            footerText=doc.get("footerText", ""),
            logoSha256=doc.get("logoSha256"),
        )

    def create(self, *, name: str, slug: str, patient_names: PatientNames = PatientNames.INITIALS,
               created_at: datetime | None = None) -> Clinic:
        doc = {"name": name, "slug": slug, "patientNames": patient_names.value, "createdAt": created_at or utcnow()}
        try:
            doc["_id"] = self._col.insert_one(doc).inserted_id
        except DuplicateKeyError as exc:
            raise ConflictError(f"A clinic with slug {slug!r} already exists.") from exc
        return self._from_doc(doc)

    def get(self, clinic_id: str) -> Clinic:
        """The caller's own clinic (the scope is the id itself)."""
        doc = self._col.find_one({"_id": to_oid(clinic_id, "clinic")})
        if doc is None:
            raise NotFoundError(f"No clinic with id {clinic_id}.")
        return self._from_doc(doc)

    def update_settings(self, clinic_id: str, **fields: Any) -> Clinic:
        allowed = {"patientNames", "primaryColor", "footerText", "logoSha256"}
        if set(fields) - allowed:
            raise ValueError(f"only {sorted(allowed)} can be changed")
        if self._col.update_one({"_id": to_oid(clinic_id, "clinic")}, {"$set": fields}).matched_count == 0:
            raise NotFoundError(f"No clinic with id {clinic_id}.")
        return self.get(clinic_id)

    def logo_in_use(self, sha256: str) -> bool:
        return self._col.count_documents({"logoSha256": sha256}, limit=1) > 0

    def list_ids(self) -> list[str]:
        """All clinic ids, for system maintenance (reconcilers) that then works clinic by clinic."""
        return [str(d["_id"]) for d in self._col.find({}, projection={"_id": 1})]

    def count(self) -> int:
        """Used by start-up to decide whether the demo clinic must be seeded."""
        return self._col.estimated_document_count()


#: Staff accounts one clinic may have (users are listed whole on the Users page and in pickers).
MAX_STAFF = 2000


class UserRepository(Repository):
    collection_name = "users"
    what = "user"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [
                IndexModel([("clinicId", ASCENDING), ("email", ASCENDING)], unique=True),
                IndexModel([("email", ASCENDING)]),
                IndexModel(
                    [("issuer", ASCENDING), ("subject", ASCENDING)],
                    unique=True,
                    partialFilterExpression={"subject": {"$type": "string"}},
                ),
            ]
        )

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> User:
        return User(
            id=str(doc["_id"]),
            clinicId=str(doc["clinicId"]),
            email=doc["email"],
            name=doc["name"],
            role=Role.coerce(doc["role"]),
            active=bool(doc.get("active", True)),
            issuer=doc.get("issuer"),
            subject=doc.get("subject"),
            createdAt=doc.get("createdAt"),
        )

    def create(self, clinic_id: str, *, email: str, name: str, role: Role) -> User:
        doc = {
            "clinicId": to_oid(clinic_id, "clinic"),
            "email": email.strip().lower(),
            "name": name,
            "role": role.value,
            "active": True,
            "issuer": None,
            "subject": None,
            "createdAt": utcnow(),
        }
        try:
            doc["_id"] = self._col.insert_one(doc).inserted_id
        except DuplicateKeyError as exc:
            raise ConflictError(f"A user with e-mail {email} already exists in this clinic.") from exc
        return self._from_doc(doc)

    def get(self, clinic_id: str, user_id: str) -> User:
        return self._from_doc(self._find_one(clinic_id, user_id))

    def update(self, clinic_id: str, user_id: str, *, role: Role | None = None, active: bool | None = None) -> User:
        changes: dict[str, Any] = {}
        if role is not None:
            changes["role"] = role.value
        if active is not None:
            changes["active"] = active
        doc = self._update_by_id(clinic_id, user_id, {"$set": changes})
        if doc is None:
            raise NotFoundError(f"No user with id {user_id} in your clinic.")
        return self._from_doc(doc)

    def find_by_identity(self, issuer: str, subject: str) -> User | None:
        """The sign-in boundary for OpenID Connect: (issuer, subject) identifies a person."""
        doc = self._col.find_one({"issuer": issuer, "subject": subject})
        return self._from_doc(doc) if doc else None

    def bind_identity(self, user_id: str, issuer: str, subject: str) -> User | None:
        """Bind an invited user (no identity yet) to (issuer, subject), once. None if already bound."""
        try:
            user = to_oid(user_id, "user")
            bound = self._col.update_one({"_id": user, "subject": None},
                                         {"$set": {"issuer": issuer, "subject": subject}})
        except DuplicateKeyError:
            return None
        doc = self._col.find_one({"_id": user}) if bound.matched_count else None
        return self._from_doc(doc) if doc else None

    def list(self, clinic_id: str) -> list[User]:
        """The clinic's staff accounts (tens, not thousands), by e-mail."""
        docs = self._col.find(self._scope(clinic_id)).limit(MAX_STAFF)
        return sorted((self._from_doc(d) for d in docs), key=lambda u: u.email)

    def get_many(self, clinic_id: str, user_ids: Iterable[str]) -> dict[str, User]:
        return {str(d["_id"]): self._from_doc(d) for d in self._by_ids(clinic_id, list(user_ids))}

    # --- the sign-in boundary: the only look-ups that are not scoped by a caller's clinic -------
    def get_for_session(self, user_id: str) -> User:
        """Reload the signed-in user by id on every rerun (role, clinic, active come from here)."""
        doc = self._col.find_one({"_id": to_oid(user_id, "user")})
        if doc is None:
            raise NotFoundError("Your user account no longer exists; sign in again.")
        return self._from_doc(doc)

    def find_by_email(self, email: str) -> list[User]:
        """Users with this e-mail across clinics (development sign-in and CLI `--as`)."""
        cursor = self._col.find({"email": email.strip().lower()}).sort("clinicId", ASCENDING)
        return [self._from_doc(d) for d in cursor]

    def list_for_dev_signin(self) -> list[User]:
        """Every active user, for the development sign-in picker (never offered with OIDC)."""
        cursor = self._col.find({"active": True}).sort([("clinicId", ASCENDING), ("role", ASCENDING)])
        return [self._from_doc(d) for d in cursor]


def _dob_to_datetime(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def name_key(last: str, first: str, chart: str) -> str:
    """The patient list's sort key: last name, first name, chart number (lower case)."""
    return f"{last.strip().lower()}{_SEP}{first.strip().lower()}{_SEP}{chart.strip().lower()}"


_SEP = "\x1f"  # sorts before every printable character: "ok" < "oka"


class PatientRepository(Repository):
    collection_name = "patients"
    what = "patient"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [
                IndexModel([("clinicId", ASCENDING), ("chartNumber", ASCENDING)], unique=True),
                IndexModel([("clinicId", ASCENDING), ("nameKey", ASCENDING)]),
                IndexModel([("clinicId", ASCENDING), ("firstKey", ASCENDING)]),
            ],
            obsolete=("clinicId_1_lastNameLower_1_firstNameLower_1",),
        )

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Patient:
        dob = doc["dateOfBirth"]
        return Patient(
            id=str(doc["_id"]),
            clinicId=str(doc["clinicId"]),
            firstName=doc["firstName"],
            lastName=doc["lastName"],
            dateOfBirth=dob.date() if isinstance(dob, datetime) else dob,
            chartNumber=doc["chartNumber"],
            createdAt=doc.get("createdAt"),
        )

    @staticmethod
    def new_document(clinic_id: str, *, first_name: str, last_name: str, date_of_birth: date,
                     chart_number: str, created_at: datetime | None = None) -> dict[str, Any]:
        return {
            "_id": ObjectId(),
            "clinicId": to_oid(clinic_id, "clinic"),
            "firstName": first_name,
            "lastName": last_name,
            "firstNameLower": first_name.lower(),
            "lastNameLower": last_name.lower(),
            "nameKey": name_key(last_name, first_name, chart_number),
            "firstKey": name_key(first_name, last_name, chart_number),
            "dateOfBirth": _dob_to_datetime(date_of_birth),
            "chartNumber": chart_number,
            "createdAt": created_at or utcnow(),
        }

    def create(
        self, clinic_id: str, *, first_name: str, last_name: str, date_of_birth: date, chart_number: str
    ) -> Patient:
        doc = self.new_document(clinic_id, first_name=first_name, last_name=last_name,
                                date_of_birth=date_of_birth, chart_number=chart_number)
        try:
            self._col.insert_one(doc)
        except DuplicateKeyError as exc:
            raise ConflictError(f"Chart number {chart_number} is already used in this clinic.") from exc
        return self._from_doc(doc)

    def get(self, clinic_id: str, patient_id: str) -> Patient:
        return self._from_doc(self._find_one(clinic_id, patient_id))

    def backfill_sort_keys(self) -> int:
        """Migration: give patients written before the keyed list their `nameKey`/`firstKey` (all clinics)."""
        changed = 0
        batch: list[UpdateOne] = []
        for doc in self._col.find({"nameKey": {"$exists": False}},
                                  {"firstName": 1, "lastName": 1, "chartNumber": 1}):
            batch.append(UpdateOne({"_id": doc["_id"]}, {"$set": {
                "nameKey": name_key(doc["lastName"], doc["firstName"], doc["chartNumber"]),
                "firstKey": name_key(doc["firstName"], doc["lastName"], doc["chartNumber"])}}))
            if len(batch) >= 1000:
                changed += self._col.bulk_write(batch, ordered=False).modified_count
                batch = []
        if batch:
            changed += self._col.bulk_write(batch, ordered=False).modified_count
        return changed

    def get_many(self, clinic_id: str, patient_ids: Iterable[str]) -> dict[str, Patient]:
        """Patients by id in one query (ids of other clinics are left out)."""
        return {str(d["_id"]): self._from_doc(d) for d in self._by_ids(clinic_id, list(patient_ids))}

    def page(self, clinic_id: str, *, limit: int = 50, cursor: str | None = None) -> Page[Patient]:
        """The clinic's patients by last name, first name (a page; `cursor` continues it)."""
        docs, next_cursor = self._page(self._scope(clinic_id), "nameKey", limit=limit, cursor=cursor,
                                       descending=False, start="")
        return Page(tuple(self._from_doc(d) for d in docs), next_cursor)

    def search(self, clinic_id: str, text: str = "", *, limit: int = 50) -> Page[Patient]:
        """Patients whose chart number is `text`, or whose name starts with it ("Oka", "Okafor, Jo",
        "Jo Okafor", "Jo"): chart-number matches first, then by last name, then by first name.

        Each way of reading the text is one bounded walk of an index; `truncated` says more matched.
        """
        text = " ".join(text.split())
        if not text:
            return self.page(clinic_id, limit=limit)
        scope = self._scope(clinic_id)
        found: dict[Any, dict[str, Any]] = {}
        truncated = False
        for doc in self._col.find({**scope, "chartNumber": text}):
            found[doc["_id"]] = doc
        lowered = text.lower()
        if "," in lowered:
            last, _, first = (part.strip() for part in lowered.partition(","))
            branches = [("nameKey", f"{last}{_SEP}{first}" if first else last)]
        elif " " in lowered:
            first_word, _, rest = lowered.partition(" ")
            branches = [("nameKey", lowered), ("nameKey", f"{rest}{_SEP}{first_word}"),
                        ("firstKey", f"{first_word}{_SEP}{rest}")]
        else:
            branches = [("nameKey", lowered), ("firstKey", lowered)]
        for field, prefix in branches:
            docs, more = self._page(scope, field, limit=limit, descending=False, start=prefix,
                                    stop=prefix_end(prefix), depth=len(prefix) + 1)
            truncated = truncated or more is not None
            for doc in docs:
                found.setdefault(doc["_id"], doc)
        items = list(found.values())
        truncated = truncated or len(items) > limit
        return Page(tuple(self._from_doc(d) for d in items[:limit]), truncated=truncated)

    def find_by_chart_number(self, clinic_id: str, chart_number: str) -> Patient | None:
        """The patient with exactly this chart number (unique per clinic): for matching imports."""
        doc = self._col.find_one(self._scope(clinic_id, chartNumber=chart_number.strip()))
        return self._from_doc(doc) if doc else None

    def find_by_name(self, clinic_id: str, last_name: str, first_name: str, *, limit: int = 20) -> list[Patient]:
        """Patients with exactly this last and first name, case-insensitively: for matching imports.
        A range on the (clinicId, nameKey) index: "last<SEP>first<SEP>" up to any chart number."""
        prefix = f"{last_name.strip().lower()}{_SEP}{first_name.strip().lower()}{_SEP}"
        query = self._scope(clinic_id, nameKey={"$gte": prefix, "$lt": prefix_end(prefix)})
        return [self._from_doc(d) for d in self._col.find(query)][:limit]


class TreatmentRepository(Repository):
    collection_name = "treatments"
    what = "treatment"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        sync_indexes(
            db[cls.collection_name],
            [IndexModel([("clinicId", ASCENDING), ("patientId", ASCENDING), ("createdAt", ASCENDING)])]
        )

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Treatment:
        return Treatment(
            id=str(doc["_id"]),
            clinicId=str(doc["clinicId"]),
            patientId=str(doc["patientId"]),
            name=doc["name"],
            status=doc.get("status", "PLANNED"),
            alignerCount=doc.get("alignerCount"),
            estimatedMonths=doc.get("estimatedMonths"),
            notes=doc.get("notes", ""),
            createdAt=doc.get("createdAt"),
        )

    def create(
        self,
        clinic_id: str,
        patient_id: str,
        *,
        name: str,
        status: str = "PLANNED",
        aligner_count: int | None = None,
        estimated_months: int | None = None,
        notes: str = "",
    ) -> Treatment:
        doc = {
            "clinicId": to_oid(clinic_id, "clinic"),
            "patientId": to_oid(patient_id, "patient"),
            "name": name,
            "status": status,
            "alignerCount": aligner_count,
            "estimatedMonths": estimated_months,
            "notes": notes,
            "createdAt": utcnow(),
        }
        doc["_id"] = self._col.insert_one(doc).inserted_id
        return self._from_doc(doc)

    def get(self, clinic_id: str, treatment_id: str) -> Treatment:
        return self._from_doc(self._find_one(clinic_id, treatment_id))

    def list_for_patient(self, clinic_id: str, patient_id: str) -> list[Treatment]:
        cursor = self._col.find(self._scope(clinic_id, patientId=to_oid(patient_id, "patient"))).sort(
            "createdAt", ASCENDING
        )
        return [self._from_doc(d) for d in cursor]



