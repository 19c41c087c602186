"""The audit trail for admins: search, CSV export and chain verification."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

from core.domain import AuditEvent, Permission
from core.infra import Infrastructure
from core.permissions import Actor
from core.repositories.audit import VerifyReport
from core.repositories.base import Page
from core.services.base import ServiceBase


class AuditService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    def search(self, actor: Actor, *, user_id: str | None = None, patient_id: str | None = None,
               action: str | None = None, day_from: date | None = None, day_to: date | None = None,
               limit: int = 200, cursor: str | None = None) -> Page[AuditEvent]:
        """Events newest first, filtered by user, patient, action and days (UTC); a page."""
        actor.require(Permission.ADMIN)
        since = datetime.combine(day_from, time.min, UTC) if day_from else None
        until = datetime.combine(day_to + timedelta(days=1), time.min, UTC) if day_to else None
        return self._infra.audit.page(actor.clinic_id, user_id=user_id, patient_id=patient_id, action=action,
                                      since=since, until=until, limit=limit, cursor=cursor)

    def to_csv(self, actor: Actor, events: list[AuditEvent]) -> bytes:
        actor.require(Permission.ADMIN)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["when (UTC)", "action", "outcome", "user id", "role", "patient id", "simulation id",
                         "details"])
        for e in events:
            writer.writerow([e.at.isoformat(), e.action, e.outcome, e.userId or "", e.role or "", e.patientId or "",
                             e.simulationId or "", "; ".join(f"{k}={v}" for k, v in sorted(e.details.items()))])
        return buffer.getvalue().encode()

    def verify(self, actor: Actor) -> VerifyReport:
        """The admin's clinic: events since the last verified checkpoint, and the chain head."""
        actor.require(Permission.ADMIN)
        report = self._infra.audit.verify(actor.clinic_id, from_checkpoint=True)
        self._infra.audit.append(actor.clinic_id, action="audit.verified", outcome="ok" if report.intact else "failed",
                                 user_id=actor.id, role=actor.role.value,
                                 details={"from": report.first_seq, "to": report.last_seq,
                                          "problems": len(report.problems)})
        return report

    def verify_all(self, *, from_checkpoint: bool = False) -> list[VerifyReport]:
        """For the CLI (an operator on the server): every clinic's whole chain (or since its checkpoint)."""
        return [self._infra.audit.verify(clinic_id, from_checkpoint=from_checkpoint)
                for clinic_id in self._infra.clinics.list_ids()]
