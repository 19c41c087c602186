"""Use cases. Every call takes the acting user; permissions and clinic scope are checked here."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.infra import Infrastructure, build_infrastructure
from core.services.apitokens import ApiTokenService
from core.services.audit import AuditService
from core.services.decks import DeckService
from core.services.exports import ExportService
from core.services.imports import ImportService
from core.services.integrations import IntegrationService
from core.services.mesh3d import Mesh3DService
from core.services.patients import PatientService
from core.services.review import ReviewService
from core.services.sessions import SessionService
from core.services.simulations import SimulationService
from core.services.viewers import ViewerService
from core.services.visuals import VisualService
from core.services.webhooks import WebhookService
from core.services.worklist import ExportWorklist


@dataclass(frozen=True)
class Services:
    """Everything a page, the CLI or a job needs, built once per process from one `Settings`."""

    infra: Infrastructure
    sessions: SessionService
    patients: PatientService
    simulations: SimulationService
    visuals: VisualService
    imports: ImportService
    review: ReviewService
    integrations: IntegrationService
    audit: AuditService
    exports: ExportService
    decks: DeckService
    meshes: Mesh3DService
    viewers: ViewerService
    api_tokens: ApiTokenService
    webhooks: WebhookService
    worklist: ExportWorklist


def build_services(settings: Settings) -> Services:
    return services_for(build_infrastructure(settings))


def services_for(infra: Infrastructure) -> Services:
    simulations = SimulationService(infra)
    meshes = Mesh3DService(infra, simulations)
    imports = ImportService(infra, simulations, on_version=meshes.request)
    visuals = VisualService(infra)
    webhooks = WebhookService(infra)
    return Services(
        infra=infra,
        sessions=SessionService(infra),
        patients=PatientService(infra),
        simulations=simulations,
        visuals=visuals,
        imports=imports,
        review=ReviewService(infra, events=webhooks.emit),
        integrations=IntegrationService(infra, imports),
        audit=AuditService(infra),
        exports=ExportService(infra, visuals, meshes, events=webhooks.emit),
        decks=DeckService(infra, visuals),
        meshes=meshes,
        viewers=ViewerService(infra, simulations),
        api_tokens=ApiTokenService(infra),
        webhooks=webhooks,
        worklist=ExportWorklist(infra),
    )
