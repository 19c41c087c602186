"""The one rule for what a patient may see: material made from an approved version after its approval.

A file rendered while its version was a draft carries DRAFT; one whose version lost its approval
(revoked, or superseded and archived) shows something a doctor no longer stands behind. Presenters and
patient-facing containers (decks, packs) use only files this rule accepts.
"""

from __future__ import annotations

from datetime import datetime

from core.domain import TreatmentSimulation


def patient_ready(*, approved_when_made: bool, made_at: datetime, sim: TreatmentSimulation | None) -> bool:
    return (approved_when_made and sim is not None and sim.isApproved and sim.approvedAt is not None
            and made_at >= sim.approvedAt)
