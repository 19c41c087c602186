"""Vendor web viewers by link: the clinic's allow-list (admins) and one viewer link per simulation version
(coordinators and doctors), embedded beside our frames only while its host is allowed.

A share link is a bearer token to the patient's case at the vendor, so the audit trail records the
host and a fingerprint of the link, never the link itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.domain import Permission, ViewerHost, ViewerLink
from core.errors import NotFoundError, ValidationError
from core.infra import Infrastructure
from core.permissions import Actor
from core.services.base import ServiceBase
from core.services.simulations import SimulationService
from core.viewer_links import embed_html, host_allowed, normalise_host_pattern, parse_viewer_url


@dataclass(frozen=True)
class ViewerEmbed:
    """What the page shows for a version's viewer link: the iframe page, or why it is not embedded."""

    link: ViewerLink
    html: str | None
    refused: str | None = None


def _fingerprint(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


class ViewerService(ServiceBase):
    def __init__(self, infra: Infrastructure, simulations: SimulationService) -> None:
        self._infra = infra
        self._simulations = simulations

    # --- the allow-list (admins) ---------------------------------------------------------------------
    def hosts(self, actor: Actor) -> list[ViewerHost]:
        actor.require(Permission.ADMIN)
        return self._infra.viewer_hosts.list(actor.clinic_id)

    def add_host(self, actor: Actor, host: str, label: str = "") -> ViewerHost:
        actor.require(Permission.ADMIN)
        pattern = normalise_host_pattern(host)
        added = self._infra.viewer_hosts.add(actor.clinic_id, host=pattern, label=label.strip()[:80],
                                             added_by=actor.id)
        self._infra.audit.append(actor.clinic_id, action="viewer_host.added", user_id=actor.id, role=actor.role.value,
                                 details={"host": pattern})
        return added

    def remove_host(self, actor: Actor, host_id: str) -> None:
        actor.require(Permission.ADMIN)
        removed = self._infra.viewer_hosts.remove(actor.clinic_id, host_id)
        self._infra.audit.append(actor.clinic_id, action="viewer_host.removed", user_id=actor.id,
                                 role=actor.role.value, details={"host": removed.host})

    def _patterns(self, clinic_id: str) -> list[str]:
        return [h.host for h in self._infra.viewer_hosts.list(clinic_id)]

    # --- links (coordinators, doctors) ---------------------------------------------------------------
    def set_link(self, actor: Actor, simulation_id: str, url: str) -> ViewerLink:
        """Attach (or replace) the version's viewer link; refused unless https and on the allow-list."""
        actor.require(Permission.IMAGING_CAPTURE)
        sim = self._simulations.get(actor, simulation_id)
        try:
            viewer = parse_viewer_url(url)
            if not host_allowed(viewer.host, self._patterns(actor.clinic_id)):
                raise ValidationError(f"{viewer.host} is not on your clinic's list of allowed viewer hosts, so it "
                                      "cannot be embedded. Ask your clinic admin to add it on the Clinic page.")
        except ValidationError as exc:
            self._infra.audit.append(actor.clinic_id, action="viewer_link.refused", outcome="refused",
                                     user_id=actor.id, role=actor.role.value, patient_id=sim.patientId,
                                     simulation_id=sim.id, details={"reason": str(exc)[:200]})
            raise
        before = self._infra.viewer_links.get(actor.clinic_id, sim.id)
        link = self._infra.viewer_links.set(actor.clinic_id, sim.id, patient_id=sim.patientId, url=viewer.url,
                                            host=viewer.host, set_by=actor.id)
        self._infra.audit.append(actor.clinic_id, action="simulation.modified", user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"change": "viewer link", "version": sim.version,
                                          "before": before.host if before else "–", "after": viewer.host,
                                          "link": _fingerprint(viewer.url)})
        return link

    def remove_link(self, actor: Actor, simulation_id: str) -> None:
        actor.require(Permission.IMAGING_CAPTURE)
        sim = self._simulations.get(actor, simulation_id)
        before = self._infra.viewer_links.get(actor.clinic_id, sim.id)
        if before is None or not self._infra.viewer_links.delete(actor.clinic_id, sim.id):
            raise NotFoundError("This version has no viewer link.")
        self._infra.audit.append(actor.clinic_id, action="simulation.modified", user_id=actor.id,
                                 role=actor.role.value, patient_id=sim.patientId, simulation_id=sim.id,
                                 details={"change": "viewer link", "version": sim.version, "before": before.host,
                                          "after": "–"})

    def link(self, actor: Actor, simulation_id: str) -> ViewerLink | None:
        """The version's viewer link, if any (presenters: approved versions only)."""
        sim = self._simulations.get(actor, simulation_id)
        if actor.approved_only and not sim.isApproved:
            return None
        return self._infra.viewer_links.get(actor.clinic_id, sim.id)

    def embed(self, actor: Actor, simulation_id: str) -> ViewerEmbed | None:
        """The version's viewer, re-checked now against the scheme rules and the current allow-list."""
        link = self.link(actor, simulation_id)
        if link is None:
            return None
        try:
            viewer = parse_viewer_url(link.url)
        except ValidationError as exc:
            return ViewerEmbed(link, None, str(exc))
        if not host_allowed(viewer.host, self._patterns(actor.clinic_id)):
            return ViewerEmbed(link, None, f"The viewer at {viewer.host} is not embedded: that host is no longer on "
                                           "your clinic's allow-list. Ask your clinic admin.")
        return ViewerEmbed(link, embed_html(viewer, title=f"Vendor viewer at {viewer.host}"))
