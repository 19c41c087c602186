"""Repositories: the only code that touches MongoDB collections. Every method is clinic-scoped."""

from core.repositories.alignments import AlignmentRepository
from core.repositories.apitokens import ApiTokenRepository
from core.repositories.assets import AssetRepository
from core.repositories.audit import AuditRepository
from core.repositories.decks import DeckRepository
from core.repositories.exports import ExportRepository
from core.repositories.idempotency import IdempotencyRepository
from core.repositories.imports import ImportRepository
from core.repositories.integrations import IntegrationRepository
from core.repositories.meshes import MeshSetRepository
from core.repositories.people import (
    ClinicRepository,
    PatientRepository,
    TreatmentRepository,
    UserRepository,
)
from core.repositories.simulations import SimulationRepository
from core.repositories.viewers import ViewerHostRepository, ViewerLinkRepository
from core.repositories.webhooks import WebhookRepository
from core.repositories.websessions import WebSessionRepository

ALL_REPOSITORIES = (
    WebSessionRepository,
    ClinicRepository,
    UserRepository,
    PatientRepository,
    TreatmentRepository,
    SimulationRepository,
    ExportRepository,
    AssetRepository,
    AuditRepository,
    AlignmentRepository,
    ImportRepository,
    IntegrationRepository,
    DeckRepository,
    MeshSetRepository,
    ViewerHostRepository,
    ViewerLinkRepository,
    ApiTokenRepository,
    IdempotencyRepository,
    WebhookRepository,
)

__all__ = [
    "ALL_REPOSITORIES",
    "AlignmentRepository",
    "ApiTokenRepository",
    "AssetRepository",
    "AuditRepository",
    "ClinicRepository",
    "DeckRepository",
    "ExportRepository",
    "IdempotencyRepository",
    "ImportRepository",
    "IntegrationRepository",
    "MeshSetRepository",
    "PatientRepository",
    "SimulationRepository",
    "TreatmentRepository",
    "UserRepository",
    "ViewerHostRepository",
    "ViewerLinkRepository",
    "WebSessionRepository",
    "WebhookRepository",
]
