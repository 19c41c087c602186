"""Small builders for records and frames used across tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from core.domain import Clinic, Patient, Role, Treatment, User
from core.imaging import encode_png
from core.infra import Infrastructure
from core.permissions import Actor
from core.services.simulations import NewFrame


@dataclass(frozen=True)
class ClinicWorld:
    clinic: Clinic
    users: dict[Role, User]
    patient: Patient
    treatment: Treatment

    def actor(self, role: Role = Role.COORDINATOR) -> Actor:
        return Actor(self.users[role])


def make_clinic(infra: Infrastructure, slug: str = "alpha", *, chart: str = "C-1") -> ClinicWorld:
    clinic = infra.create_clinic(name=f"Clinic {slug}", slug=slug)
    users = {role: infra.users.create(clinic.id, email=f"{role.value}@{slug}.test", name=role.value, role=role)
             for role in Role}
    patient = infra.patients.create(clinic.id, first_name="Test", last_name=f"Patient{slug}",
                                    date_of_birth=date(2001, 2, 3), chart_number=chart)
    treatment = infra.treatments.create(clinic.id, patient.id, name="Aligners", aligner_count=4)
    return ClinicWorld(clinic, users, patient, treatment)


def gradient_frame(stage: int, size: tuple[int, int] = (64, 36)) -> np.ndarray:
    """A small RGB frame whose content depends on the stage (distinct pixels per stage)."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.concatenate([x + 0 * y, y + 0 * x, np.full((height, width, 1), (stage * 37) % 256)], axis=2)
    return rgb.astype(np.uint8)


def new_frames(count: int, *, view: str = "front", size: tuple[int, int] = (64, 36)) -> list[NewFrame]:
    return [NewFrame(stage, view, encode_png(gradient_frame(stage, size)), f"Stage {stage}")
            for stage in range(count)]


def teal_frames(stages: int) -> list[NewFrame]:
    """Frames without any red, so a DRAFT watermark (red) is easy to find in decoded video."""
    frames = []
    for stage in range(stages):
        rgb = np.empty((180, 320, 3), np.uint8)
        rgb[:] = (40, 130 + 10 * stage, 150)
        frames.append(NewFrame(stage, "front", encode_png(rgb), f"Stage {stage}"))
    return frames


def draft_fraction(rgb: np.ndarray) -> float:
    """The share of a decoded frame's pixels in the DRAFT watermark's red."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return float(((r - g > 30) & (r - b > 15)).mean())


def open_app(world: ClinicWorld, page: str, *, role: Role = Role.COORDINATOR, **params: str):
    """A fresh AppTest session (a reload, or a pasted link) of `page` with `params` in the address."""
    from streamlit.testing.v1 import AppTest

    from core.config import PROJECT_ROOT

    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = world.users[role].id
    at.run()
    at.switch_page(page)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()
