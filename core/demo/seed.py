"""The demo: two clinics with users of every role, patients, photos and simulations.

Everything is generated (procedural dental renders, fictional people); nothing is downloaded.
Records are created at once; the frames of each simulation are rendered by an RQ job per
simulation (`core.jobs.render_demo_simulation`), or inline with `inline=True` (CLI, tests).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Literal

from bson import ObjectId

from core.demo.arches import ArchCase, render_photo, render_stage
from core.domain import AssetKind, Role, SimulationType
from core.errors import ValidationError
from core.imaging import encode_jpeg, encode_png
from core.permissions import Actor
from core.services import Services
from core.services.simulations import NewFrame

Profile = Literal["full", "mini"]
PHOTO_LABELS = {
    "smile": "Frontal smile",
    "intraoral_front": "Intraoral frontal",
    "intraoral_left": "Intraoral left",
    "intraoral_right": "Intraoral right",
    "intraoral_upper": "Upper occlusal",
    "intraoral_lower": "Lower occlusal",
}


@dataclass(frozen=True)
class DemoSimulation:
    name: str
    simulation_type: SimulationType
    stages: int
    views: tuple[str, ...]
    versions: int = 1  # >1: older versions end up SUPERSEDED
    source_system: str = "ClinCheck"
    approved: bool = False  # the latest version is approved by the clinic's doctor


@dataclass(frozen=True)
class DemoPatient:
    first: str
    last: str
    dob: date
    chart: str
    treatment: str
    aligners: int
    months: int
    notes: str
    seed: int
    crowding: float
    simulations: tuple[DemoSimulation, ...]


@dataclass(frozen=True)
class DemoClinic:
    name: str
    slug: str
    patients: tuple[DemoPatient, ...]


@dataclass(frozen=True)
class RenderSize:
    frame: tuple[int, int]
    photo: tuple[int, int]


SIZES: dict[str, RenderSize] = {
    "full": RenderSize(frame=(1280, 720), photo=(1280, 960)),
    "mini": RenderSize(frame=(320, 180), photo=(320, 240)),
}
ALL_VIEWS = ("front", "left", "right", "upper", "lower")


def _aligner(
    name: str,
    stages: int,
    views: tuple[str, ...] = ("front", "upper"),
    *,
    versions: int = 1,
    source: str = "ClinCheck",
    approved: bool = False,
) -> DemoSimulation:
    return DemoSimulation(name, SimulationType.ALIGNER, stages, views, versions, source, approved)


_SMILE = DemoSimulation("Smile design", SimulationType.SMILE_DESIGN, 2, ("smile",), 1, "Smile design photos", True)


def demo_plan(profile: Profile = "full") -> tuple[DemoClinic, ...]:
    """The demo clinics. `mini` keeps the same shape with few, small frames (for tests)."""
    if profile not in SIZES:
        raise ValidationError(f"Unknown demo profile {profile!r}; choose full or mini.")
    mini = profile == "mini"

    def stages(n: int) -> int:
        return 4 if mini else n

    def views(v: tuple[str, ...]) -> tuple[str, ...]:
        return v[:1] if mini else v

    a = DemoClinic(
        "Brightside Orthodontics",
        "brightside",
        (
            DemoPatient(
                "Maya",
                "Okafor",
                date(2009, 4, 17),
                "BO-1001",
                "Comprehensive aligner therapy",
                40,
                20,
                "Moderate upper and lower crowding; IPR 0.3 mm at 3-4.",
                11,
                1.3,
                (_aligner("ClinCheck upper & lower", stages(40), views(ALL_VIEWS), versions=2, approved=True), _SMILE),
            ),
            DemoPatient(
                "Lucas",
                "Brennan",
                date(1994, 9, 2),
                "BO-1002",
                "Adult aligner therapy",
                28,
                14,
                "Relapse after braces as a teen; lower incisor crowding.",
                23,
                0.9,
                (_aligner("ClinCheck lower relapse", stages(28), views(("front", "lower"))),),
            ),
            DemoPatient(
                "Sofia",
                "Marchetti",
                date(2011, 1, 29),
                "BO-1003",
                "Phase II aligners",
                34,
                18,
                "Crowding with a blocked-out upper canine.",
                37,
                1.7,
                (
                    _aligner("Outcome Simulator scan", stages(24), views(("front",)), source="iTero"),
                    _aligner("ClinCheck final plan", stages(34), views(("front", "upper")), versions=3),
                ),
            ),
            DemoPatient(
                "Noah",
                "Lindqvist",
                date(2007, 6, 8),
                "BO-1004",
                "Aligners with elastics",
                22,
                12,
                "Mild spacing and crowding; class II elastics.",
                41,
                0.7,
                (_aligner("ClinCheck v1", stages(22), approved=True),),
            ),
            DemoPatient(
                "Amara",
                "Haddad",
                date(1988, 11, 23),
                "BO-1005",
                "Limited anterior alignment",
                20,
                9,
                "Cosmetic anterior alignment before veneers.",
                53,
                0.8,
                (_aligner("Anterior alignment", stages(20), views(("front",)), source="3Shape"), _SMILE),
            ),
            DemoPatient(
                "Ethan",
                "Whitfield",
                date(2010, 3, 14),
                "BO-1006",
                "Comprehensive aligner therapy",
                36,
                19,
                "Severe crowding, extraction-free plan with expansion.",
                67,
                1.9,
                (_aligner("ClinCheck expansion plan", stages(36)),),
            ),
        ),
    )
    b = DemoClinic(
        "Lakeview Smiles",
        "lakeview",
        (
            DemoPatient(
                "Grace",
                "Nakamura",
                date(2008, 8, 5),
                "LV-2001",
                "Aligner therapy",
                30,
                15,
                "Crowding and a deep bite.",
                71,
                1.2,
                (_aligner("ClinCheck initial", stages(30), views(("front",)), versions=2, approved=True),),
            ),
            DemoPatient(
                "Diego",
                "Alvarez",
                date(1999, 12, 19),
                "LV-2002",
                "Adult aligner therapy",
                24,
                12,
                "Lower crowding.",
                83,
                1.0,
                (_aligner("ClinCheck", stages(24), views(("front",))),),
            ),
            DemoPatient(
                "Hannah",
                "Schultz",
                date(2012, 5, 30),
                "LV-2003",
                "Phase I expansion",
                20,
                10,
                "Narrow upper arch.",
                97,
                1.4,
                (_aligner("Expansion", stages(20), views(("front",))),),
            ),
        ),
    )
    return (a, b)


def find_demo_simulation(
    clinic_slug: str, chart: str, index: int, profile: Profile
) -> tuple[DemoPatient, DemoSimulation]:
    for clinic in demo_plan(profile):
        for patient in clinic.patients:
            if clinic.slug == clinic_slug and patient.chart == chart and 0 <= index < len(patient.simulations):
                return patient, patient.simulations[index]
    raise ValidationError(f"No demo simulation {clinic_slug}/{chart}/{index}.")


def demo_email(role: Role, clinic: DemoClinic) -> str:
    return f"{role.value}@{clinic.slug}.example"


def seed_demo(
    services: Services,
    *,
    profile: Profile = "full",
    inline: bool = False,
    progress: Callable[[str], None] = lambda _m: None,
) -> int:
    """Create the demo clinics; returns the number of simulations rendered or queued.

    Refuses to run when any clinic exists (the demo is for an empty database).
    """
    infra = services.infra
    if infra.clinics.count():
        raise ValidationError("The database already has clinics; the demo is seeded into an empty database only.")
    count = 0
    for clinic_plan in demo_plan(profile):
        clinic = infra.create_clinic(name=clinic_plan.name, slug=clinic_plan.slug)
        users = {
            role: infra.users.create(
                clinic.id,
                email=demo_email(role, clinic_plan),
                name=f"{role.value.title()} ({clinic_plan.name})",
                role=role,
            )
            for role in Role
        }
        coordinator = Actor(users[Role.COORDINATOR])
        for plan in clinic_plan.patients:
            patient = infra.patients.create(
                clinic.id, first_name=plan.first, last_name=plan.last, date_of_birth=plan.dob, chart_number=plan.chart
            )
            treatment = infra.treatments.create(
                clinic.id,
                patient.id,
                name=plan.treatment,
                status="IN_PROGRESS",
                aligner_count=plan.aligners,
                estimated_months=plan.months,
                notes=plan.notes,
            )
            if inline:
                _store_photos(services, coordinator, patient.id, plan, SIZES[profile])
            else:  # ~6 s of rendering per patient: a job, so the launcher is not busy for a minute
                from core.queueing import enqueue

                enqueue(infra.redis, "demo", "core.jobs.render_demo_photos", clinic.id, patient.id, profile,
                        job_id=f"demo-photos-{patient.id}")
            progress(f"{clinic_plan.slug}: patient {plan.chart}")
            # Cheapest first: the patient's smile design (two photos) is viewable within seconds, while
            # a 40-stage, 5-view aligner plan takes minutes on two cores.
            for index, _sim in sorted(enumerate(plan.simulations), key=lambda item: _frames_to_render(item[1])):
                if inline:
                    render_demo_simulation(
                        services, coordinator, patient.id, treatment.id, index=index, profile=profile
                    )
                else:
                    from core.jobs import render_demo_simulation as job
                    from core.queueing import enqueue

                    enqueue(
                        infra.redis,
                        "demo",
                        job,
                        clinic.id,
                        patient.id,
                        treatment.id,
                        str(index),
                        profile,
                        job_id=f"demo-{patient.id}-{index}",
                    )
                count += 1
    progress(f"{count} simulations {'rendered' if inline else 'queued for rendering'}")
    return count


def _frames_to_render(sim: DemoSimulation) -> int:
    """About how many frames a demo simulation's job renders (drafts keep to the first view)."""
    return sim.stages * (len(sim.views) + max(0, sim.versions - 1))


def render_demo_photos(services: Services, actor: Actor, patient_id: str, *, profile: Profile) -> int:
    """Render and store one demo patient's clinical photos (a retried job rewrites the same records)."""
    clinic = services.infra.clinics.get(actor.clinic_id)
    chart = services.infra.patients.get(actor.clinic_id, patient_id).chartNumber
    plan_patient, _sim = find_demo_simulation(clinic.slug, chart, 0, profile)
    _store_photos(services, actor, patient_id, plan_patient, SIZES[profile])
    return len(PHOTO_LABELS)


def _store_photos(services: Services, actor: Actor, patient_id: str, plan: DemoPatient, size: RenderSize) -> None:
    infra = services.infra
    case = ArchCase(seed=plan.seed, crowding=plan.crowding)
    docs = []
    for kind, label in PHOTO_LABELS.items():
        image = encode_jpeg(render_photo(case, kind, size.photo), quality=90)
        blob = infra.store.put(image.data)
        docs.append(
            infra.assets.new_document(
                actor.clinic_id,
                patient_id=patient_id,
                kind=AssetKind.PHOTO,
                content_type=image.content_type,
                size=blob.size,
                sha256=blob.sha256,
                created_by=actor.id,
                width=image.width,
                height=image.height,
                label=label,
                tags=("before", kind),
                # One id per patient and photo: a retried job replaces its records instead of adding more.
                asset_id=ObjectId(hashlib.sha256(f"demo-photo:{patient_id}:{kind}".encode()).hexdigest()[:24]),
            )
        )
    infra.assets.upsert_many(actor.clinic_id, docs)


def render_demo_simulation(
    services: Services, actor: Actor, patient_id: str, treatment_id: str, *, index: int, profile: Profile
) -> int:
    """Render and store every version of one demo simulation; skips versions that already exist."""
    clinic = services.infra.clinics.get(actor.clinic_id)
    chart = services.infra.patients.get(actor.clinic_id, patient_id).chartNumber
    plan_patient, plan = find_demo_simulation(clinic.slug, chart, index, profile)
    size = SIZES[profile]
    existing = [
        s
        for s in services.infra.simulations.list_for_patient(actor.clinic_id, patient_id, include_archived=True)
        if s.simulationType is plan.simulation_type and s.treatmentId == treatment_id
    ]
    created = 0
    for version in range(len(existing) + 1, plan.versions + 1):
        # Older versions are less refined plans: a little less correction by the final stage.
        case = ArchCase(seed=plan_patient.seed * 7 + version, crowding=plan_patient.crowding)
        frames: list[NewFrame] = []
        if plan.simulation_type is SimulationType.SMILE_DESIGN:
            for stage, progress in ((0, 0.0), (1, 1.0)):
                rgb = render_photo(case, "smile", size.photo, progress=progress)
                frames.append(
                    NewFrame(stage, "smile", encode_jpeg(rgb, quality=92), "Before" if stage == 0 else "Predicted")
                )
        else:
            # Older drafts are kept to the first view: they exist to show versioning, and first-start
            # seeding should finish within a couple of minutes on two cores.
            views = plan.views if version == plan.versions else plan.views[:1]
            for stage in range(plan.stages):
                for view in views:
                    rgb = render_stage(case, stage, plan.stages, view, size.frame)
                    frames.append(NewFrame(stage, view, encode_png(rgb, compression=1), f"Stage {stage}"))
        name = plan.name if version == plan.versions else f"{plan.name} (draft {version})"
        sim = services.simulations.create_version(
            actor,
            patient_id=patient_id,
            treatment_id=treatment_id,
            simulation_type=plan.simulation_type,
            name=name,
            frames=frames,
            source_system=plan.source_system,
            source_id=f"DEMO-{chart}-{index}-v{version}",
            metadata={
                "demo": True,
                "stageCount": plan.stages,
                "views": list(plan.views),
                "alignerCount": plan_patient.aligners,
            },
        )
        created += 1
        if plan.approved and version == plan.versions:
            doctor = next(u for u in services.infra.users.list(actor.clinic_id) if u.role is Role.DOCTOR)
            services.review.approve(Actor(doctor), sim.id)
    return created
