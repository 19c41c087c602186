"""Which pages a signed-in user sees. Pages only hide what the services would refuse anyway."""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import Permission
from core.permissions import Actor


@dataclass(frozen=True)
class PageEntry:
    path: str
    title: str
    icon: str


_PAGES: tuple[tuple[Permission, PageEntry], ...] = (
    (Permission.IMAGING_VIEW, PageEntry("pages/patients.py", "Patients", ":material/groups:")),
    (Permission.IMAGING_VIEW, PageEntry("pages/simulation.py", "Simulation", ":material/animation:")),
    (Permission.IMAGING_VIEW, PageEntry("pages/compare.py", "Compare", ":material/compare:")),
    (Permission.IMAGING_VIEW, PageEntry("pages/gallery.py", "Gallery", ":material/photo_library:")),
    (Permission.IMAGING_VIEW, PageEntry("pages/exports.py", "Exports", ":material/movie:")),
    (Permission.IMAGING_EXPORT, PageEntry("pages/decks.py", "Presentations", ":material/slideshow:")),
    (Permission.IMAGING_APPROVE, PageEntry("pages/review.py", "Review", ":material/fact_check:")),
    (Permission.IMAGING_CAPTURE, PageEntry("pages/imports.py", "Import", ":material/upload_file:")),
    (Permission.ADMIN, PageEntry("pages/integrations.py", "Integrations", ":material/sync_alt:")),
    (Permission.ADMIN, PageEntry("pages/users.py", "Users", ":material/manage_accounts:")),
    (Permission.ADMIN, PageEntry("pages/audit.py", "Audit", ":material/policy:")),
    (Permission.ADMIN, PageEntry("pages/clinic.py", "Clinic", ":material/palette:")),
)


def all_url_paths() -> list[str]:
    """Every page's address (`pages/simulation.py` → `simulation`), as `st.Page` derives it."""
    return [page.path.removeprefix("pages/").removesuffix(".py") for _, page in _PAGES]


def pages_for(actor: Actor) -> list[PageEntry]:
    return [page for permission, page in _PAGES if actor.can(permission)]
