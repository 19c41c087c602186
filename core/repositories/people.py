"""Clinics, users, patients and treatments: the neighbouring modules the simulations depend on."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from core.domain import Clinic, Patient, Role, Treatment, User
from core.errors import ConflictError, NotFoundError
from core.repositories.base import Repository, to_oid, utcnow


class ClinicRepository(Repository):
    collection_name = "clinics"
    what = "clinic"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes([IndexModel([("slug", ASCENDING)], unique=True)])

    @staticmethod
    def _from_doc(doc: dict[str, Any]) -> Clinic:
        return Clinic(
            id=str(doc["_id"]),
            name=doc["name"],
            slug=doc["slug"],
            showPatientNames=bool(doc.get("showPatientNames", False)),
            createdAt=doc.get("createdAt"),
            primaryColor=doc.get("primaryColor", "#0f766e"),
            footerText=doc.get("footerText", ""),
            logoSha256=doc.get("logoSha256"),
        )

    def create(self, *, name: str, slug: str, show_patient_names: bool = False) -> Clinic:
        doc = {"name": name, "slug": slug, "showPatientNames": show_patient_names, "createdAt": utcnow()}
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
        allowed = {"showPatientNames", "primaryColor", "footerText", "logoSha256"}
        if set(fields) - allowed:
            raise ValueError(f"only {sorted(allowed)} can be changed")
        doc = self._col.find_one_and_update({"_id": to_oid(clinic_id, "clinic")}, {"$set": fields},
                                            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFoundError(f"No clinic with id {clinic_id}.")
        return self._from_doc(doc)

    def logo_in_use(self, sha256: str) -> bool:
        return self._col.count_documents({"logoSha256": sha256}, limit=1) > 0

    def list_ids(self) -> list[str]:
        """All clinic ids, for system maintenance (reconcilers) that then works clinic by clinic."""
        return [str(d["_id"]) for d in self._col.find({}, projection={"_id": 1})]

    def count(self) -> int:
        """Used by start-up to decide whether the demo clinic must be seeded."""
        return self._col.estimated_document_count()


class UserRepository(Repository):
    collection_name = "users"
    what = "user"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes(
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
        doc = self._col.find_one_and_update(self._scope(clinic_id, _id=to_oid(user_id, "user")), {"$set": changes},
                                            return_document=ReturnDocument.AFTER)
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
            doc = self._col.find_one_and_update(
                {"_id": to_oid(user_id, "user"), "subject": None},
                {"$set": {"issuer": issuer, "subject": subject}}, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            return None
        return self._from_doc(doc) if doc else None

    def list(self, clinic_id: str) -> list[User]:
        cursor = self._col.find(self._scope(clinic_id)).sort("email", ASCENDING)
        return [self._from_doc(d) for d in cursor]

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


class PatientRepository(Repository):
    collection_name = "patients"
    what = "patient"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes(
            [
                IndexModel([("clinicId", ASCENDING), ("chartNumber", ASCENDING)], unique=True),
                IndexModel([("clinicId", ASCENDING), ("lastNameLower", ASCENDING), ("firstNameLower", ASCENDING)]),
            ]
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

    def create(
        self, clinic_id: str, *, first_name: str, last_name: str, date_of_birth: date, chart_number: str
    ) -> Patient:
        doc = {
            "clinicId": to_oid(clinic_id, "clinic"),
            "firstName": first_name,
            "lastName": last_name,
            "firstNameLower": first_name.lower(),
            "lastNameLower": last_name.lower(),
            "dateOfBirth": _dob_to_datetime(date_of_birth),
            "chartNumber": chart_number,
            "createdAt": utcnow(),
        }
        try:
            doc["_id"] = self._col.insert_one(doc).inserted_id
        except DuplicateKeyError as exc:
            raise ConflictError(f"Chart number {chart_number} is already used in this clinic.") from exc
        return self._from_doc(doc)

    def get(self, clinic_id: str, patient_id: str) -> Patient:
        return self._from_doc(self._find_one(clinic_id, patient_id))

    def search(self, clinic_id: str, text: str = "", *, limit: int = 200) -> list[Patient]:
        """Patients whose last/first name starts with, or chart number equals, `text`."""
        query = self._scope(clinic_id)
        text = text.strip()
        if text:
            prefix = "^" + re.escape(text.lower())
            query["$or"] = [
                {"lastNameLower": {"$regex": prefix}},
                {"firstNameLower": {"$regex": prefix}},
                {"chartNumber": text},
            ]
        cursor = (
            self._col.find(query)
            .sort([("lastNameLower", ASCENDING), ("firstNameLower", ASCENDING)])
            .limit(limit)
        )
        return [self._from_doc(d) for d in cursor]

    def find_by_chart_number(self, clinic_id: str, chart_number: str) -> Patient | None:
        """The patient with exactly this chart number (unique per clinic): for matching imports."""
        doc = self._col.find_one(self._scope(clinic_id, chartNumber=chart_number.strip()))
        return self._from_doc(doc) if doc else None

    def find_by_name(self, clinic_id: str, last_name: str, first_name: str, *, limit: int = 20) -> list[Patient]:
        """Patients with exactly this last and first name, case-insensitively: for matching imports.
        All-equality on the (clinicId, lastNameLower, firstNameLower) index."""
        query = self._scope(clinic_id, lastNameLower=last_name.strip().lower(),
                            firstNameLower=first_name.strip().lower())
        return [self._from_doc(d) for d in self._col.find(query).limit(limit)]


class TreatmentRepository(Repository):
    collection_name = "treatments"
    what = "treatment"

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:
        db[cls.collection_name].create_indexes(
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



