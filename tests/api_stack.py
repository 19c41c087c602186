"""One real server (server.py) with two clinics and API tokens of every kind, shared by the API tests of a module."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from bson import ObjectId

from core.config import load_settings
from core.domain import Permission, Role, SimulationType, TreatmentSimulation
from core.infra import Infrastructure, build_infrastructure
from core.migrations import prepare_database
from core.permissions import ROLE_PERMISSIONS
from core.services import Services, services_for
from tests.conftest import Servers, fresh_env, start_streamlit, stop_process
from tests.factories import ClinicWorld, make_clinic, new_frames

ROLES = ("coordinator", "doctor", "presenter", "admin")
BAD = ("none", "expired", "revoked", "no_view", "no_write")


@dataclass
class ClinicSetup:
    world: ClinicWorld
    approved: TreatmentSimulation
    draft: TreatmentSimulation
    tokens: dict[str, str]  # role or kind -> token
    token_ids: dict[str, str]


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    infra: Infrastructure
    services: Services
    alpha: ClinicSetup
    beta: ClinicSetup

    def client(self, who: str, clinic: str = "alpha") -> httpx.Client:
        setup = self.alpha if clinic == "alpha" else self.beta
        headers = {} if who == "none" else {"Authorization": f"Bearer {setup.tokens[who]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _clinic(services: Services, infra: Infrastructure, slug: str) -> ClinicSetup:
    world = make_clinic(infra, slug)
    coordinator = world.actor()
    approved = services.simulations.create_version(
        coordinator, patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name=f"ClinCheck approved {slug}", frames=new_frames(3),
        queue_renditions=False)
    approved = services.review.approve(world.actor(Role.DOCTOR), approved.id)
    draft = services.simulations.create_version(
        coordinator, patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.SMILE_DESIGN,
        name=f"Smile draft {slug}", frames=new_frames(2), queue_renditions=False)
    admin = world.actor(Role.ADMIN)
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}

    def make(kind: str, role: Role, permissions: set[Permission] | None = None) -> str:
        secret, token = services.api_tokens.create(admin, user_id=world.users[role].id, name=f"{kind} token",
                                                   permissions=permissions or set(ROLE_PERMISSIONS[role]), days=30)
        tokens[kind], ids[kind] = secret, token.id
        return token.id

    for role in ROLES:
        make(role, Role(role))
    expired = make("expired", Role.COORDINATOR)
    infra.db["api_tokens"].update_one({"_id": ObjectId(expired)},
                                      {"$set": {"expiresAt": approved.createdAt - timedelta(days=1)}})
    services.api_tokens.revoke(admin, make("revoked", Role.COORDINATOR))
    make("no_view", Role.COORDINATOR, {Permission.IMAGING_CAPTURE})  # lacks view and export
    make("no_write", Role.COORDINATOR, {Permission.IMAGING_VIEW})  # lacks capture and export
    make("throttled", Role.COORDINATOR, {Permission.IMAGING_VIEW})
    return ClinicSetup(world, approved, draft, tokens, ids)


def start_stack(servers: Servers, tmp: Path, **extra_env: str) -> tuple[Stack, object]:
    env = {**fresh_env(servers, tmp), "API_RATE_PER_MINUTE": "150", **extra_env}
    infra = build_infrastructure(load_settings(env))
    prepare_database(infra)
    services = services_for(infra)
    alpha, beta = _clinic(services, infra, "alpha"), _clinic(services, infra, "beta")
    process, url = start_streamlit({**os.environ, **env}, tmp / "streamlit.log")
    return Stack(url, env, infra, services, alpha, beta), process


def stop_stack(stack: Stack, process: object) -> None:
    stop_process(process)  # type: ignore[arg-type]
    stack.infra.db.client.drop_database(stack.env["MONGODB_DB"])
    stack.infra.db.client.close()
