"""Who is signed in: the development sign-in and reloading the acting user on every rerun."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from core.domain import Clinic, PatientNames, Permission, Role, User
from core.errors import NotFoundError, PermissionDeniedError, ValidationError
from core.infra import Infrastructure
from core.permissions import Actor
from core.repositories.base import utcnow
from core.repositories.websessions import WebSession
from core.services.base import ServiceBase


@dataclass(frozen=True)
class SignInChoice:
    user: User
    clinic: Clinic


#: A sign-in ticket is traded for the session cookie by the browser within this time, once.
TICKET_TTL = timedelta(minutes=2)
#: A download link works for this long, for the session that got it.
LINK_TTL = timedelta(minutes=10)
#: How often a session's "last seen" is written (not on every rerun).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class ResumedSession:
    actor: Actor
    session: WebSession


@dataclass(frozen=True)
class DownloadGrant:
    """What a verified download link allows: this actor, this asset."""

    actor: Actor
    asset_id: str
    session_id: str


class SessionService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    def dev_signin_choices(self) -> list[SignInChoice]:
        """Demo users to pick from; empty unless the development sign-in is allowed."""
        if not self._infra.settings.dev_signin_allowed:
            return []
        clinics: dict[str, Clinic] = {}
        choices = []
        for user in self._infra.users.list_for_dev_signin():
            if user.clinicId not in clinics:
                clinics[user.clinicId] = self._infra.clinics.get(user.clinicId)
            choices.append(SignInChoice(user, clinics[user.clinicId]))
        return choices

    def dev_signin(self, user_id: str) -> Actor:
        if not self._infra.settings.dev_signin_allowed:
            raise PermissionDeniedError("The development sign-in is disabled on this server.")
        actor = self.load_actor(user_id)
        self._infra.audit.append(actor.clinic_id, action="signin", user_id=actor.id,
                                 role=actor.role.value, details={"method": "development"})
        return actor

    def oidc_signin(self, *, issuer: str, subject: str, email: str | None, email_verified: bool) -> Actor:
        """Map an OpenID Connect identity to a user: by (issuer, subject) only.

        An invited user (created by an admin, no identity yet) is bound on their first sign-in when
        the provider vouches for the same e-mail (email_verified); from then on only that
        (issuer, subject) signs in as them — another identity with the same e-mail gets no access.
        """
        user = self._infra.users.find_by_identity(issuer, subject)
        if user is None and email and email_verified:
            invited = [u for u in self._infra.users.find_by_email(email) if u.subject is None and u.active]
            if len(invited) == 1:
                user = self._infra.users.bind_identity(invited[0].id, issuer, subject)
        if user is None:
            raise PermissionDeniedError("You have no access to Treatment Simulation Studio yet; ask your clinic "
                                        "admin to invite you.")
        actor = self.load_actor(user.id)
        self._infra.audit.append(actor.clinic_id, action="signin", user_id=actor.id, role=actor.role.value,
                                 details={"method": "oidc", "issuer": issuer, "subject": subject})
        return actor

    def signed_out(self, actor: Actor, reason: str, *, session_id: str | None = None) -> None:
        if session_id:
            self._infra.web_sessions.revoke(session_id, reason=reason)
        self._infra.audit.append(actor.clinic_id, action="signout", user_id=actor.id, role=actor.role.value,
                                 details={"reason": reason})

    # --- browser sessions: an HttpOnly cookie that outlives a page load ----------------------------------
    def sign_in_ticket(self, actor: Actor, *, method: str) -> str:
        """A one-time code the signed-in page hands the browser to fetch its session cookie."""
        return self._infra.web_sessions.issue_ticket(actor.clinic_id, actor.id, method=method, ttl=TICKET_TTL)

    def start_web_session(self, ticket: str) -> tuple[str, WebSession]:
        """Trade a ticket for a session: (cookie secret, session). Refused when used, expired or unknown."""
        started = self._infra.web_sessions.redeem(ticket, lifetime=timedelta(hours=self._infra.settings.session_hours))
        if started is None:
            raise PermissionDeniedError("That sign-in link was already used or has expired; sign in again.")
        secret, session = started
        actor = self.load_actor(session.userId)
        self._infra.audit.append(actor.clinic_id, action="session.started", user_id=actor.id, role=actor.role.value,
                                 details={"method": session.method})
        return secret, session

    def resume(self, secret: str) -> ResumedSession | None:
        """The signed-in user of a cookie, or None (unknown, revoked, expired or idle too long).

        Idle and expired sessions are revoked here, so a stolen cookie stops working with them.
        """
        session = self._infra.web_sessions.find(secret)
        if session is None or session.revokedAt is not None:
            return None
        now = utcnow()
        idle = timedelta(minutes=self._infra.settings.idle_timeout_minutes)
        if now >= session.expiresAt or now - session.lastSeenAt > idle:
            self._infra.web_sessions.revoke(session.id, reason="expired" if now >= session.expiresAt else "idle")
            return None
        try:
            actor = self.load_actor(session.userId)
        except PermissionDeniedError:
            self._infra.web_sessions.revoke(session.id, reason="revoked")
            return None
        if now - session.lastSeenAt > TOUCH_EVERY:
            self._infra.web_sessions.touch(session.id, now)
        return ResumedSession(actor, session)

    def session_valid(self, session_id: str) -> bool:
        """Whether a session (by id) is still live: a sign-out elsewhere or a revocation ends it."""
        doc = self._infra.web_sessions.get(session_id)
        return doc is not None and doc.revokedAt is None and utcnow() < doc.expiresAt

    def download_link(self, actor: Actor, session_id: str, asset_id: str) -> str:
        """A link to one file for this session only, for `LINK_TTL` (the path carries no patient data)."""
        expires = int((utcnow() + LINK_TTL).timestamp())
        message = f"{asset_id}|{actor.id}|{session_id}|{expires}".encode()
        keys = self._infra.link_keys
        return f"/files/{asset_id}?e={expires}&k={keys.current}&s={keys.sign(message)}"

    def check_download(self, secret: str, asset_id: str, *, expires: str, key_id: str, signature: str
                       ) -> DownloadGrant:
        """Verify a download link against the cookie that comes with it; raises PermissionDeniedError."""
        resumed = self.resume(secret)
        if resumed is None:
            raise PermissionDeniedError("Sign in to download this file.")
        return self._verify_link(resumed.actor, resumed.session.id, asset_id, expires=expires, key_id=key_id,
                                 signature=signature)

    # API callers get the same links, bound to their token instead of a browser session.
    def token_download_link(self, actor: Actor, asset_id: str) -> str:
        """A link to one file for this API token only, for `LINK_TTL` (send the token with it)."""
        if actor.token_id is None:
            raise PermissionDeniedError("Download links for API calls are bound to an API token.")
        return self.download_link(actor, f"token:{actor.token_id}", asset_id)

    def check_token_download(self, actor: Actor, asset_id: str, *, expires: str, key_id: str, signature: str
                             ) -> DownloadGrant:
        """Verify a download link against the API token that comes with it; raises PermissionDeniedError."""
        if actor.token_id is None:
            raise PermissionDeniedError("Send the API token this link was made for.")
        return self._verify_link(actor, f"token:{actor.token_id}", asset_id, expires=expires, key_id=key_id,
                                 signature=signature)

    def _verify_link(self, actor: Actor, binding: str, asset_id: str, *, expires: str, key_id: str,
                     signature: str) -> DownloadGrant:
        try:
            expiry = int(expires)
        except ValueError as exc:
            raise PermissionDeniedError("This download link is not valid.") from exc
        message = f"{asset_id}|{actor.id}|{binding}|{expiry}".encode()
        if not self._infra.link_keys.verify(message, signature, key_id):
            raise PermissionDeniedError("This download link belongs to another session; open the file from the app.")
        if utcnow().timestamp() > expiry:
            raise PermissionDeniedError("This download link has expired; open the file from the app again.")
        return DownloadGrant(actor, asset_id, binding)

    # --- admin: users of the clinic -----------------------------------------------------------------
    def invite(self, actor: Actor, *, email: str, name: str, role: Role) -> User:
        actor.require(Permission.ADMIN)
        if "@" not in email or not name.strip():
            raise ValidationError("Give the person's e-mail address and name.")
        user = self._infra.users.create(actor.clinic_id, email=email, name=name.strip(), role=role)
        self._infra.audit.append(actor.clinic_id, action="user.invited", user_id=actor.id, role=actor.role.value,
                                 details={"userId": user.id, "role": role.value})
        return user

    def update_user(self, actor: Actor, user_id: str, *, role: Role | None = None, active: bool | None = None) -> User:
        actor.require(Permission.ADMIN)
        if user_id == actor.id and (active is False or (role is not None and role is not Role.ADMIN)):
            raise ValidationError("You cannot disable yourself or remove your own admin role; ask another admin.")
        user = self._infra.users.update(actor.clinic_id, user_id, role=role, active=active)
        self._infra.audit.append(actor.clinic_id, action="user.updated", user_id=actor.id, role=actor.role.value,
                                 details={"userId": user_id, "role": role.value if role else None, "active": active})
        return user

    def load_actor(self, user_id: str) -> Actor:
        """The user as the database has it now; a disabled or deleted user is refused."""
        try:
            user = self._infra.users.get_for_session(user_id)
        except NotFoundError as exc:
            raise PermissionDeniedError("Your account no longer exists; sign in again.") from exc
        if not user.active:
            raise PermissionDeniedError("Your account is disabled; ask your clinic admin.")
        return Actor(user, on_denied=self._audit_denial)

    def _audit_denial(self, actor: Actor, permission: Permission) -> None:
        self._infra.audit.append(actor.clinic_id, action="permission.denied", outcome="refused", user_id=actor.id,
                                 role=actor.role.value, details={"permission": permission.value})

    def actor_by_email(self, email: str, clinic_slug: str | None = None) -> Actor:
        """The CLI's `--as EMAIL`: exactly one active user must match."""
        users = self._infra.users.find_by_email(email)
        if clinic_slug:
            users = [u for u in users if self._infra.clinics.get(u.clinicId).slug == clinic_slug]
        if not users:
            raise NotFoundError(f"No user with e-mail {email}.")
        if len(users) > 1:
            raise NotFoundError(f"{email} exists in several clinics; add --clinic SLUG.")
        return self.load_actor(users[0].id)

    def clinic_users(self, actor: Actor) -> list[User]:
        """The users of the actor's clinic (admins manage them; pickers choose among them)."""
        if not (actor.can(Permission.ADMIN) or actor.can(Permission.IMAGING_VIEW)):
            actor.require(Permission.ADMIN)
        return self._infra.users.list(actor.clinic_id)

    def update_clinic(self, actor: Actor, *, patient_names: PatientNames | str, primary_color: str, footer_text: str,
                      logo: bytes | None = None) -> Clinic:
        """Branding and patient-name policy of the admin's clinic. A logo must be a PNG or JPEG."""
        actor.require(Permission.ADMIN)
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", primary_color):
            raise ValidationError(f"{primary_color!r} is not a colour like #0f766e.")
        names = PatientNames.coerce(patient_names)
        fields: dict[str, object] = {"patientNames": names.value, "primaryColor": primary_color.lower(),
                                     "footerText": footer_text.strip()[:200]}
        if logo is not None:
            from core.imaging import encode_png, resize_rgb
            from core.importing.images import load_still

            pixels = resize_rgb(load_still(logo, name="logo"), (600, 200))  # checked and stripped like imports
            fields["logoSha256"] = self._infra.store.put(encode_png(pixels).data).sha256
        clinic = self._infra.clinics.update_settings(actor.clinic_id, **fields)
        self._infra.audit.append(actor.clinic_id, action="clinic.updated", user_id=actor.id, role=actor.role.value,
                                 details={"patientNames": names.value})
        return clinic

    def clinic_logo(self, actor: Actor) -> bytes | None:
        clinic = self.clinic(actor)
        return self._infra.store.get(clinic.logoSha256) if clinic.logoSha256 else None

    def clinic(self, actor: Actor) -> Clinic:
        return self._infra.clinics.get(actor.clinic_id)
