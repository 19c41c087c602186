"""The composition root of a process: settings → database, Redis, asset store and repositories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TypeVar

from pymongo.client_session import ClientSession
from pymongo.database import Database
from redis import Redis

from core.config import Settings
from core.db import connect
from core.domain import Clinic, PatientNames
from core.keys import Keyring, load_keyring
from core.queueing import connect_redis
from core.repositories import (
    AlignmentRepository,
    ApiTokenRepository,
    AssetRepository,
    AuditRepository,
    ClinicRepository,
    DeckRepository,
    ExportRepository,
    IdempotencyRepository,
    ImportRepository,
    IntegrationRepository,
    MeshSetRepository,
    PatientRepository,
    SimulationRepository,
    TreatmentRepository,
    UserRepository,
    ViewerHostRepository,
    ViewerLinkRepository,
    WebhookRepository,
)
from core.repositories.websessions import WebSessionRepository
from core.storage import AssetStore, build_asset_store

T = TypeVar("T")


@dataclass
class Infrastructure:
    """Clients and repositories of one process. Built once (composition root), shared by services."""

    settings: Settings
    db: Database

    def transaction(self, write: Callable[[ClientSession], T]) -> T:
        """Run `write(session)` in one multi-document transaction (retried on transient errors)."""
        with self.db.client.start_session() as session:
            return session.with_transaction(write)

    def create_clinic(self, *, name: str, slug: str, patient_names: PatientNames = PatientNames.INITIALS,
                      created_at: datetime | None = None) -> Clinic:
        """A new clinic with the head of its audit chain (a clinic without one reads as a wiped trail)."""
        clinic = self.clinics.create(name=name, slug=slug, patient_names=patient_names, created_at=created_at)
        self.audit.start_chain(clinic.id)
        return clinic

    @cached_property
    def redis(self) -> Redis:
        return connect_redis(self.settings)

    @cached_property
    def store(self) -> AssetStore:
        return build_asset_store(self.settings, self.db)

    @cached_property
    def clinics(self) -> ClinicRepository:
        return ClinicRepository(self.db)

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self.db)

    @cached_property
    def patients(self) -> PatientRepository:
        return PatientRepository(self.db)

    @cached_property
    def treatments(self) -> TreatmentRepository:
        return TreatmentRepository(self.db)

    @cached_property
    def simulations(self) -> SimulationRepository:
        return SimulationRepository(self.db)

    @cached_property
    def exports(self) -> ExportRepository:
        return ExportRepository(self.db)

    @cached_property
    def assets(self) -> AssetRepository:
        return AssetRepository(self.db)

    @cached_property
    def audit_keys(self) -> Keyring:
        return load_keyring(self.settings.audit_keys, self.settings.data_dir / "keys" / "audit.keys",
                            variable="AUDIT_KEYS")

    @cached_property
    def link_keys(self) -> Keyring:
        return load_keyring(self.settings.link_keys, self.settings.data_dir / "keys" / "links.keys",
                            variable="LINK_KEYS")

    @cached_property
    def web_sessions(self) -> WebSessionRepository:
        return WebSessionRepository(self.db)

    @cached_property
    def audit(self) -> AuditRepository:
        return AuditRepository(self.db, self.audit_keys)

    @cached_property
    def alignments(self) -> AlignmentRepository:
        return AlignmentRepository(self.db)

    @cached_property
    def imports(self) -> ImportRepository:
        return ImportRepository(self.db)

    @cached_property
    def decks(self) -> DeckRepository:
        return DeckRepository(self.db)

    @cached_property
    def integrations(self) -> IntegrationRepository:
        return IntegrationRepository(self.db)

    @cached_property
    def mesh_sets(self) -> MeshSetRepository:
        return MeshSetRepository(self.db)

    @cached_property
    def viewer_hosts(self) -> ViewerHostRepository:
        return ViewerHostRepository(self.db)

    @cached_property
    def viewer_links(self) -> ViewerLinkRepository:
        return ViewerLinkRepository(self.db)

    @cached_property
    def api_tokens(self) -> ApiTokenRepository:
        return ApiTokenRepository(self.db)

    @cached_property
    def idempotency(self) -> IdempotencyRepository:
        return IdempotencyRepository(self.db)

    @cached_property
    def webhooks(self) -> WebhookRepository:
        return WebhookRepository(self.db)


def build_infrastructure(settings: Settings) -> Infrastructure:
    return Infrastructure(settings=settings, db=connect(settings))
