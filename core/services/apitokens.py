"""API tokens: created and revoked by a clinic admin, checked on every API request, every call audited.

A token acts as one user of the clinic with a chosen subset of that user's permissions (never more:
the user's role is re-read on every request, so a demoted or disabled user's tokens shrink or stop at
once). Revocation and expiry apply on the next request. Calls are recorded in the clinic's audit trail
with the token's id (never the token) by a background writer that appends them in batches, so a busy
integration costs one audit transaction per batch, not one per request.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError

from core.domain import Permission
from core.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from core.infra import Infrastructure
from core.permissions import ROLE_PERMISSIONS, Actor
from core.repositories.apitokens import ApiToken
from core.repositories.base import utcnow
from core.repositories.idempotency import StoredAnswer
from core.services.base import ServiceBase

log = logging.getLogger(__name__)
#: How often a token's "last used" time is written (not on every request).
TOUCH_EVERY = timedelta(seconds=60)
MAX_DAYS = 366


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    retry_after: int = 0


class ApiTokenService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra
        self._calls: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    # --- admin ---------------------------------------------------------------------------------------
    def create(self, actor: Actor, *, user_id: str, name: str, permissions: frozenset[Permission] | set[Permission],
               days: int) -> tuple[str, ApiToken]:
        """A new token for a user of the admin's clinic: (the token, shown once; its record)."""
        actor.require(Permission.ADMIN)
        name = name.strip()
        if not name:
            raise ValidationError("Name the token after who uses it (e.g. 'Case Presentation Builder').")
        if not 1 <= days <= MAX_DAYS:
            raise ValidationError(f"A token lasts 1 to {MAX_DAYS} days (not {days}); make a new one when it ends.")
        user = self._infra.users.get(actor.clinic_id, user_id)
        if not user.active:
            raise ValidationError("That user is disabled; enable them first or choose another user.")
        wanted = frozenset(Permission.coerce(p) for p in permissions)
        if not wanted:
            raise ValidationError("Give the token at least one permission.")
        beyond = wanted - ROLE_PERMISSIONS[user.role]
        if beyond:
            raise ValidationError(f"{user.name} ({user.role.value}) does not have "
                                  f"{', '.join(sorted(p.value for p in beyond))}; a token cannot have more than its "
                                  "user.")
        secret, token = self._infra.api_tokens.create(actor.clinic_id, user_id=user.id, name=name[:120],
                                                      permissions=wanted, created_by=actor.id,
                                                      lifetime=timedelta(days=days))
        self._infra.audit.append(actor.clinic_id, action="apitoken.created", user_id=actor.id, role=actor.role.value,
                                 details={"tokenId": token.id, "forUser": user.id,
                                          "permissions": sorted(p.value for p in wanted), "days": days})
        return secret, token

    def list(self, actor: Actor) -> list[ApiToken]:
        actor.require(Permission.ADMIN)
        return self._infra.api_tokens.list(actor.clinic_id)

    def revoke(self, actor: Actor, token_id: str) -> ApiToken:
        actor.require(Permission.ADMIN)
        token = self._infra.api_tokens.revoke(actor.clinic_id, token_id)
        self._infra.audit.append(actor.clinic_id, action="apitoken.revoked", user_id=actor.id, role=actor.role.value,
                                 details={"tokenId": token.id})
        return token

    # --- requests ------------------------------------------------------------------------------------
    def authenticate(self, token: str) -> Actor:
        """The acting user of a Bearer token, limited to the token's permissions; PermissionDeniedError
        when the token is unknown, revoked, expired, or its user is disabled."""
        record = self._infra.api_tokens.verify(token) if token else None
        if record is None:
            raise PermissionDeniedError("Send a valid API token: 'Authorization: Bearer tss_…'.")
        now = utcnow()
        if record.revokedAt is not None:
            raise PermissionDeniedError("This API token was revoked; ask your clinic admin for a new one.")
        if now >= record.expiresAt:
            raise PermissionDeniedError("This API token has expired; ask your clinic admin for a new one.")
        try:
            user = self._infra.users.get_for_session(record.userId)
        except NotFoundError as exc:
            raise PermissionDeniedError("The user this API token acts for no longer exists.") from exc
        if not user.active or user.clinicId != record.clinicId:
            raise PermissionDeniedError("The user this API token acts for is disabled.")
        if record.lastUsedAt is None or now - record.lastUsedAt > TOUCH_EVERY:
            self._infra.api_tokens.touch(record.id, now)
        return Actor(user, on_denied=self._audit_denial, granted=record.permissions, token_id=record.id)

    def _audit_denial(self, actor: Actor, permission: Permission) -> None:
        self._infra.audit.append(actor.clinic_id, action="permission.denied", outcome="refused", user_id=actor.id,
                                 role=actor.role.value, details={"permission": permission.value,
                                                                 "tokenId": actor.token_id})

    def check_rate(self, token_id: str) -> RateVerdict:
        """A fixed one-minute window per token, counted in Redis (shared by every server process)."""
        limit = self._infra.settings.api_rate_per_minute
        now = time.time()
        window = int(now // 60)
        key = f"api-rate:{token_id}:{window}"
        try:
            pipe = self._infra.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = int(pipe.execute()[0])
        except RedisError:  # the queue being down must not stop reads: uncounted, and logged
            log.warning("API rate of token %s not counted: Redis unreachable", token_id)
            return RateVerdict(True)
        if count <= limit:
            return RateVerdict(True)
        return RateVerdict(False, retry_after=max(1, int((window + 1) * 60 - now) + 1))

    # --- idempotency keys (the API's POSTs) ----------------------------------------------------------------
    def claim_key(self, actor: Actor, key: str, request_hash: str, *, wait_seconds: float = 60.0
                  ) -> StoredAnswer | None:
        """Claim `Idempotency-Key` for this request (None: go ahead, then `finish_key` or `release_key`),
        or the stored answer of the earlier request with the same key and body. The same key with another
        body is a ConflictError; while the earlier request still runs, this waits for its answer."""
        if not key or len(key) > 200:
            raise ValidationError("Idempotency-Key must be 1 to 200 characters (e.g. a UUID).")
        token_id = actor.token_id or f"user:{actor.id}"
        deadline = time.monotonic() + wait_seconds
        while True:
            stored = self._infra.idempotency.claim(actor.clinic_id, token_id, key, request_hash)
            if stored is None:
                return None
            if stored.request_hash != request_hash:
                raise ConflictError("This Idempotency-Key was used with another request; use a new key for a new "
                                    "request.")
            if stored.done:
                return stored
            if time.monotonic() > deadline:
                raise ConflictError("The first request with this Idempotency-Key is still running; retry later.")
            time.sleep(0.05)

    def finish_key(self, actor: Actor, key: str, *, status: int, headers: list[tuple[str, str]],
                   body: bytes) -> None:
        self._infra.idempotency.finish(actor.token_id or f"user:{actor.id}", key, status=status, headers=headers,
                                       body=body)

    def release_key(self, actor: Actor, key: str) -> None:
        self._infra.idempotency.release(actor.token_id or f"user:{actor.id}", key)

    def purge_keys(self, clinic_id: str) -> int:
        """Drop the clinic's idempotency keys older than a day (maintenance)."""
        return self._infra.idempotency.purge_expired(clinic_id)

    def record_call(self, actor: Actor, *, method: str, route: str, status: int,
                    simulation_id: str | None = None) -> None:
        """Queue an `api.call` audit event (token id, method, route template, status; never the token,
        never query text). Written in batches by one background thread."""
        details = {"tokenId": actor.token_id, "method": method, "route": route, "status": status}
        event = {"action": "api.call", "outcome": "ok" if status < 400 else "refused", "user_id": actor.id,
                 "role": actor.role.value, "simulation_id": simulation_id, "details": details}
        self._calls.put((actor.clinic_id, event))
        self._ensure_writer()

    def flush_calls(self, timeout: float = 10.0) -> None:
        """Wait until every queued call record is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while (self._calls.unfinished_tasks and time.monotonic() < deadline):
            time.sleep(0.02)

    def _ensure_writer(self) -> None:
        if self._writer is not None and self._writer.is_alive():
            return
        with self._writer_lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_calls, name="api-audit", daemon=True)
                self._writer.start()
                atexit.register(self.flush_calls, 5.0)  # a server stopping normally writes what it queued

    def _append(self, clinic_id: str, events: list[dict[str, Any]], attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            try:
                self._infra.audit.append_many(clinic_id, events)
                return
            except Exception:  # the writer must survive a database hiccup; retried, then logged
                if attempt == attempts:
                    log.exception("could not record %d API calls in the audit trail", len(events))
                else:
                    time.sleep(0.2 * attempt)

    def _write_calls(self) -> None:
        while True:
            batch = [self._calls.get()]
            time.sleep(0.25)  # let a burst gather into one batch (one audit transaction per batch)
            while len(batch) < 2000:
                try:
                    batch.append(self._calls.get_nowait())
                except queue.Empty:
                    break
            by_clinic: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for clinic_id, event in batch:
                by_clinic[clinic_id].append(event)
            for clinic_id, events in by_clinic.items():
                self._append(clinic_id, events)
            for _ in batch:
                self._calls.task_done()
