"""Who may do what. The role table lives here and only here; services call `require`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from core.domain import Permission, Role, User
from core.errors import PermissionDeniedError

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.COORDINATOR: frozenset(
        {Permission.IMAGING_VIEW, Permission.IMAGING_CAPTURE, Permission.IMAGING_EXPORT}
    ),
    Role.DOCTOR: frozenset(
        {
            Permission.IMAGING_VIEW,
            Permission.IMAGING_CAPTURE,
            Permission.IMAGING_EXPORT,
            Permission.IMAGING_APPROVE,
        }
    ),
    # Presenters see and export approved material only (see `Actor.approved_only`).
    Role.PRESENTER: frozenset({Permission.IMAGING_VIEW, Permission.IMAGING_EXPORT}),
    Role.ADMIN: frozenset({Permission.IMAGING_VIEW, Permission.ADMIN}),
}


@dataclass(frozen=True)
class Actor:
    """The signed-in user acting on a service call, as loaded from the database for this request."""

    user: User
    #: Called with the missing permission before a refusal is raised (the audit trail records it).
    on_denied: Callable[[Actor, Permission], None] | None = field(default=None, compare=False, repr=False)
    #: An API token acting for the user: the subset of the role's permissions the token was given.
    granted: frozenset[Permission] | None = None
    #: The id of that API token (recorded in the audit trail; never the token itself).
    token_id: str | None = None

    @property
    def id(self) -> str:
        return self.user.id

    @property
    def clinic_id(self) -> str:
        return self.user.clinicId

    @property
    def role(self) -> Role:
        return self.user.role

    @property
    def permissions(self) -> frozenset[Permission]:
        if not self.user.active:
            return frozenset()
        role = ROLE_PERMISSIONS[self.user.role]
        return role if self.granted is None else role & self.granted

    @property
    def approved_only(self) -> bool:
        """Presenters see approved simulation versions only."""
        return self.user.role is Role.PRESENTER

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            if self.on_denied is not None:
                self.on_denied(self, permission)
            if self.granted is not None and permission in ROLE_PERMISSIONS[self.user.role]:
                raise PermissionDeniedError(f"This API token was not given {permission.value}; ask your clinic "
                                            "admin for a token that includes it.")
            raise PermissionDeniedError(
                f"Your role ({self.user.role.value}) does not include {permission.value}; "
                "ask your clinic admin if you need it."
            )
