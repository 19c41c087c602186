"""How much of a patient's identity an output may carry: one rule for every image, video, PDF and deck.

The clinic's setting is the ceiling; the user's caption choice is applied below it. Nothing here ever
reaches file names or file metadata (those never carry patient data at all).
"""

from __future__ import annotations

from typing import Any

from core.domain import Clinic, Patient, PatientNames

_ORDER = (PatientNames.NONE, PatientNames.INITIALS, PatientNames.FULL)


def caption_level(clinic: Clinic, requested: PatientNames | str) -> PatientNames:
    """What an output may show: the user's choice, never more than the clinic allows."""
    wanted = PatientNames.coerce(requested)
    return min(wanted, clinic.patientNames, key=_ORDER.index)


def patient_caption(patient: Patient, level: PatientNames) -> str | None:
    if level is PatientNames.FULL:
        return f"{patient.firstName} {patient.lastName}"
    if level is PatientNames.INITIALS:
        return patient.initials
    return None


def output_context(clinic: Clinic) -> dict[str, Any]:
    """Everything about the clinic that changes what an output looks like: part of every request key,
    so a changed policy or branding makes a new export instead of returning an earlier one."""
    return {"clinicName": clinic.name, "patientNames": clinic.patientNames.value, "primaryColor": clinic.primaryColor,
            "footerText": clinic.footerText, "logo": clinic.logoSha256}


def patient_listing(patient: Patient, clinic: Clinic) -> str:
    """How a list row names the patient it belongs to, per the clinic's setting: the full name, the
    initials with the chart number, or the chart number alone."""
    if clinic.patientNames is PatientNames.FULL:
        return patient.display_name
    if clinic.patientNames is PatientNames.INITIALS:
        return f"{patient.initials} · {patient.chartNumber}"
    return f"Chart {patient.chartNumber}"
