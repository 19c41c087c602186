"""Watch-folder integrations: scanner/planner software exports into a folder; a scheduled job imports.

The connector boundary (`Connector`) is where a vendor cloud connector (iTero, 3Shape, ClinCheck
partner APIs) would plug in: list new exports, read one as uploads. Only drop folders ship here.
Exports that name a unique patient (iTero manifest; folder names like "Okafor_Maya_2009-04-17")
are imported directly; the rest wait in the Unmatched imports queue for a coordinator.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from core.domain import (
    ImportSource,
    ImportState,
    Integration,
    IntegrationKind,
    Permission,
    Role,
    SimulationImport,
    SimulationType,
)
from core.errors import StudioError, ValidationError
from core.infra import Infrastructure
from core.permissions import Actor
from core.repositories.base import Page
from core.services.base import ServiceBase
from core.services.imports import ImportService, Upload

log = logging.getLogger(__name__)
#: An export younger than this may still be being written by the vendor software.
SETTLE_SECONDS = 10.0
MEDIA = {".mp4", ".mov", ".m4v", ".webm"}
IMAGES = {".png", ".jpg", ".jpeg", ".webp"}
MESHES = {".stl", ".ply", ".obj"}


@dataclass(frozen=True)
class ExportItem:
    key: str  # identifies this export in this state (path, size, mtime): a re-export is a new item
    path: Path
    source: ImportSource
    label: str  # the name the vendor gave it (may name the patient: stays in the database)


class Connector(Protocol):
    def list_exports(self, integration: Integration) -> list[ExportItem]: ...

    def read(self, item: ExportItem) -> list[Upload]: ...


class DropFolderConnector:
    """One export per sub-folder or file of the integration's folder."""

    def __init__(self, settle_seconds: float = SETTLE_SECONDS) -> None:
        self._settle = settle_seconds

    def list_exports(self, integration: Integration) -> list[ExportItem]:
        root = Path(integration.folder)
        if not root.is_dir():
            raise ValidationError(f"The drop folder {root} does not exist or is not a folder.")
        items = []
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            files = [p for p in entry.rglob("*") if p.is_file() and not p.is_symlink()] if entry.is_dir() else [entry]
            if not files:
                continue
            newest = max(p.stat().st_mtime for p in files)
            if time.time() - newest < self._settle:
                continue  # still being written
            source = self._source(integration.kind, files)
            if source is None:
                continue
            size = sum(p.stat().st_size for p in files)
            items.append(ExportItem(f"{entry.name}|{size}|{int(newest)}", entry, source, entry.name))
        return items

    @staticmethod
    def _source(kind: IntegrationKind, files: list[Path]) -> ImportSource | None:
        suffixes = {p.suffix.lower() for p in files}
        if kind is IntegrationKind.ITERO:
            return ImportSource.ITERO if suffixes & {".xml", ".zip"} else None
        if kind is IntegrationKind.THREE_SHAPE:
            return ImportSource.STAGED_3D if suffixes & (MESHES | {".zip"}) else None
        if suffixes & MEDIA:
            return ImportSource.RECORDING
        return ImportSource.FILES if suffixes & (IMAGES | {".zip"}) else None

    def read(self, item: ExportItem) -> list[Upload]:
        if item.path.is_file():
            return [Upload(item.path.name, item.path.read_bytes())]
        return [Upload(str(p.relative_to(item.path)), p.read_bytes())
                for p in sorted(item.path.rglob("*")) if p.is_file() and not p.is_symlink()]


CONNECTORS: dict[IntegrationKind, Connector] = {kind: DropFolderConnector() for kind in IntegrationKind}
_NAME_DATE = re.compile(r"(\d{4})[-_.](\d{2})[-_.](\d{2})")


def name_hint(label: str) -> tuple[str, str, date | None] | None:
    """(last, first, date of birth) from an export name like "Okafor_Maya_2009-04-17" or "Okafor, Maya"."""
    found = _NAME_DATE.search(label)
    dob = None
    if found:
        try:
            dob = date(int(found[1]), int(found[2]), int(found[3]))
        except ValueError:
            dob = None
    words = [w for w in re.split(r"[\s_,.\-()]+", _NAME_DATE.sub(" ", Path(label).stem)) if w.isalpha()]
    return (words[0], words[1], dob) if len(words) >= 2 else None


class IntegrationService(ServiceBase):
    def __init__(self, infra: Infrastructure, imports: ImportService,
                 connectors: dict[IntegrationKind, Connector] | None = None) -> None:
        self._infra = infra
        self._imports = imports
        self._connectors = connectors or CONNECTORS

    # --- admin ---------------------------------------------------------------------------------------
    def create(self, actor: Actor, *, kind: IntegrationKind, name: str, folder: str, import_as: str) -> Integration:
        actor.require(Permission.ADMIN)
        path = Path(folder).expanduser()
        if not path.is_absolute() or not path.is_dir():
            raise ValidationError(f"{folder} is not an existing folder on the server; give an absolute path.")
        user = self._infra.users.get(actor.clinic_id, import_as)
        if user.role not in (Role.COORDINATOR, Role.DOCTOR) or not user.active:
            raise ValidationError("Imports must be made as an active coordinator or doctor of your clinic.")
        if not name.strip():
            raise ValidationError("Name the integration (e.g. 'iTero scanner, room 2').")
        integration = self._infra.integrations.create(actor.clinic_id, kind=kind, name=name.strip(),
                                                      folder=str(path), import_as=user.id)
        self._infra.audit.append(actor.clinic_id, action="integration.created", user_id=actor.id,
                                 role=actor.role.value, details={"integrationId": integration.id, "kind": kind.value})
        return integration

    def list(self, actor: Actor) -> list[Integration]:
        if not (actor.can(Permission.ADMIN) or actor.can(Permission.IMAGING_CAPTURE)):
            actor.require(Permission.ADMIN)
        return self._infra.integrations.list(actor.clinic_id)

    def set_enabled(self, actor: Actor, integration_id: str, enabled: bool) -> None:
        actor.require(Permission.ADMIN)
        self._infra.integrations.set_enabled(actor.clinic_id, integration_id, enabled)

    def unmatched(self, actor: Actor, *, limit: int = 20, cursor: str | None = None) -> Page[SimulationImport]:
        """Imports waiting for a coordinator to name the patient, newest first (a page)."""
        return self._imports.recent(actor, states=(ImportState.UNMATCHED,), limit=limit, cursor=cursor)

    # --- the scheduled job ---------------------------------------------------------------------------
    def sync_all(self) -> int:
        """Sync every enabled integration of every clinic; returns how many exports were picked up."""
        picked = 0
        for clinic_id in self._infra.clinics.list_ids():
            for integration in self._infra.integrations.list(clinic_id, enabled_only=True):
                picked += self.sync(integration)
        return picked

    def sync(self, integration: Integration) -> int:
        connector = self._connectors[integration.kind]
        try:
            items = connector.list_exports(integration)
        except StudioError as exc:
            self._infra.integrations.record_sync(integration.clinicId, integration.id, error=str(exc))
            return 0
        counts = {"imported": 0, "unmatched": 0, "failed": 0}
        picked = 0
        for item in items:
            if not self._infra.integrations.claim_item(integration.clinicId, integration.id, item.key):
                continue
            picked += 1
            counts[self._import(integration, connector, item)] += 1
        self._infra.integrations.record_sync(integration.clinicId, integration.id, **counts)
        return picked

    def _import(self, integration: Integration, connector: Connector, item: ExportItem) -> str:
        actor = Actor(self._infra.users.get(integration.clinicId, integration.importAs))
        try:
            record = self._imports.start(actor, source=item.source, uploads=connector.read(item), patient_id=None,
                                         simulation_type=SimulationType.ALIGNER, name=item.label,
                                         integration_id=integration.id, queue_analysis=False)
            record = self._imports.analyze(integration.clinicId, record.id)
            if record.state is not ImportState.PREVIEW:
                return "failed"
            patient_id = self._match(integration.clinicId, record, item)
            if patient_id is None:
                self._imports.mark_unmatched(integration.clinicId, record.id)
                return "unmatched"
            self._imports.confirm(actor, record.id, order=[c.key for c in record.candidates], patient_id=patient_id,
                                  queue=False)
            done = self._imports.commit(integration.clinicId, record.id)
            return "imported" if done.state is ImportState.DONE else "failed"
        except StudioError as exc:
            log.warning("integration %s: an export could not be imported (%s)", integration.id, type(exc).__name__)
            return "failed"

    def _match(self, clinic_id: str, record: SimulationImport, item: ExportItem) -> str | None:
        matches = record.metadata.get("patientMatch")
        if matches is not None:  # iTero: from the manifest
            return matches[0] if len(matches) == 1 else None
        hint = name_hint(item.label)
        if hint is None:
            return None
        last, first, dob = hint
        found = [p.id for p in self._infra.patients.search(clinic_id, last)
                 if p.lastName.lower() == last.lower() and p.firstName.lower() == first.lower()
                 and (dob is None or p.dateOfBirth == dob)]
        return found[0] if len(found) == 1 else None
