"""Webhooks: signed notifications of `export.done`, `export.failed` and `simulation.approved`.

An admin registers an HTTPS URL per integration and the events it wants. Each event becomes one
delivery record (its id is the `X-TSS-Delivery` header, the same on every retry) and an RQ job that
POSTs it, retried with back-off; every attempt is recorded. A receiver verifies:

    import hashlib, hmac, time
    def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
        timestamp = headers["X-TSS-Timestamp"]
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return (abs(time.time() - int(timestamp)) <= tolerance
                and hmac.compare_digest(f"sha256={expected}", headers["X-TSS-Signature"]))

and processes each `X-TSS-Delivery` once (a delivery whose answer was lost, e.g. the worker died
mid-request, is sent again with the same id). Bodies carry ids only, never patient data.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

from bson import ObjectId

from core.domain import Permission, RenditionState
from core.errors import ServiceUnavailableError, ValidationError
from core.infra import Infrastructure
from core.permissions import Actor
from core.queueing import enqueue, job_state
from core.repositories.base import utcnow
from core.repositories.webhooks import WebhookDelivery, WebhookEndpoint
from core.services.base import ServiceBase

log = logging.getLogger(__name__)
EVENTS = ("export.done", "export.failed", "simulation.approved")
TIMEOUT_SECONDS = 10


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _internal(host: str) -> bool:
    """An IP literal on loopback, a private, link-local or otherwise non-public network."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower() in ("localhost", "localhost.localdomain")
    return not address.is_global


def _resolves_internal(host: str) -> bool:
    """Whether any address the host name resolves to is internal (checked before every delivery)."""
    if _internal(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: the attempt fails and is retried like any network error
    return any(_internal(str(info[4][0])) for info in infos)


class WebhookService(ServiceBase):
    def __init__(self, infra: Infrastructure) -> None:
        self._infra = infra

    # --- admin -------------------------------------------------------------------------------------------
    def register(self, actor: Actor, *, name: str, url: str, events: tuple[str, ...] | list[str]
                 ) -> WebhookEndpoint:
        """A new endpoint; the returned record carries its signing secret (show it once)."""
        actor.require(Permission.ADMIN)
        name, url = name.strip(), url.strip()
        if not name:
            raise ValidationError("Name the integration the webhook is for (e.g. 'Patient Communication').")
        self._check_url(url)
        chosen = tuple(dict.fromkeys(events))
        if not chosen or any(e not in EVENTS for e in chosen):
            raise ValidationError(f"Choose events among {', '.join(EVENTS)}.")
        endpoint = self._infra.webhooks.create(actor.clinic_id, name=name[:120], url=url, events=chosen)
        self._infra.audit.append(actor.clinic_id, action="webhook.registered", user_id=actor.id,
                                 role=actor.role.value, details={"webhookId": endpoint.id, "events": list(chosen)})
        return endpoint

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme == "http" and loopback and self._infra.settings.webhooks_allow_loopback_http:
            return
        if parts.scheme != "https" or not parts.hostname:
            raise ValidationError("A webhook URL must start with https:// (e.g. https://crm.example.com/hooks/tss).")
        if parts.username or parts.password:
            raise ValidationError("Put no user name or password in the webhook URL; deliveries are signed instead.")
        if _internal(parts.hostname):
            raise ValidationError("A webhook goes to a public address; this one is on the server's own or a private "
                                  "network.")

    def list(self, actor: Actor) -> list[WebhookEndpoint]:
        actor.require(Permission.ADMIN)
        return self._infra.webhooks.list(actor.clinic_id)

    def set_enabled(self, actor: Actor, endpoint_id: str, enabled: bool) -> None:
        actor.require(Permission.ADMIN)
        self._infra.webhooks.set_enabled(actor.clinic_id, endpoint_id, enabled)

    def deliveries(self, actor: Actor, endpoint_id: str) -> list[WebhookDelivery]:
        actor.require(Permission.ADMIN)
        endpoint = self._infra.webhooks.get(actor.clinic_id, endpoint_id)
        return self._infra.webhooks.recent_deliveries(actor.clinic_id, endpoint.id)

    # --- events --------------------------------------------------------------------------------------------
    def emit(self, clinic_id: str, event: str, data: dict[str, object]) -> int:
        """Record one delivery per subscribed, enabled endpoint and queue it. Returns how many."""
        queued = 0
        for endpoint in self._infra.webhooks.list(clinic_id):
            if not endpoint.enabled or event not in endpoint.events:
                continue
            delivery_id = ObjectId()
            body = json.dumps({"id": str(delivery_id), "event": event, "createdAt": utcnow().isoformat(),
                               "data": data}, separators=(",", ":"), sort_keys=True).encode()
            delivery = self._infra.webhooks.new_delivery(clinic_id, endpoint.id, event, body, delivery_id)
            try:
                enqueue(self._infra.redis, "webhook", "core.jobs.deliver_webhook", clinic_id, delivery.id,
                        job_id=f"webhook-{delivery.id}")
            except ServiceUnavailableError:
                log.warning("webhook delivery %s recorded but not queued: Redis unreachable", delivery.id)
            queued += 1
        return queued

    def reconcile(self, clinic_id: str) -> int:
        """Queue again the deliveries of the last two days whose job is gone (Redis was down when the event
        happened, or its job expired). Returns how many. A delivery already on its way is left alone."""
        now = utcnow()
        queued = 0
        for delivery in self._infra.webhooks.pending(clinic_id, older_than=now - timedelta(minutes=1),
                                                     since=now - timedelta(days=2)):
            if job_state(self._infra.redis, f"webhook-{delivery.id}") not in (None, RenditionState.FAILED):
                continue
            try:
                enqueue(self._infra.redis, "webhook", "core.jobs.deliver_webhook", clinic_id, delivery.id,
                        job_id=f"webhook-{delivery.id}")  # the same id: one job per delivery at a time
            except ServiceUnavailableError:
                return queued
            queued += 1
        return queued

    def deliver(self, clinic_id: str, delivery_id: str, *, final_attempt: bool = True) -> str:
        """POST one delivery (the job's body). Raises on a failed attempt so RQ retries it with back-off."""
        delivery = self._infra.webhooks.delivery(clinic_id, delivery_id)
        if delivery.state != "PENDING":
            return delivery.state  # delivered (or given up) already: never sent twice by us
        endpoint = self._infra.webhooks.get(clinic_id, delivery.endpointId)
        if not endpoint.enabled:
            self._infra.webhooks.record_attempt(clinic_id, delivery.id, status=None, error="endpoint disabled",
                                                delivered=False, final=True)
            return "FAILED"
        host = urlsplit(endpoint.url).hostname or ""
        if not self._infra.settings.webhooks_allow_loopback_http and _resolves_internal(host):
            self._infra.webhooks.record_attempt(clinic_id, delivery.id, status=None, delivered=False, final=True,
                                                error="the URL's host resolves to a private or loopback address")
            return "FAILED"
        timestamp = int(time.time())
        request = urllib.request.Request(endpoint.url, data=delivery.body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "TreatmentSimulationStudio-Webhooks/1",
            "X-TSS-Event": delivery.event, "X-TSS-Delivery": delivery.id, "X-TSS-Timestamp": str(timestamp),
            "X-TSS-Signature": sign(endpoint.secret, timestamp, delivery.body)})
        status: int | None = None
        error: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            error = type(exc).__name__
        delivered = status is not None and 200 <= status < 300
        self._infra.webhooks.record_attempt(clinic_id, delivery.id, status=status, error=error, delivered=delivered,
                                            final=final_attempt and not delivered)
        if not delivered:
            raise ServiceUnavailableError(f"Webhook delivery {delivery.id} failed ({error}); it will be retried.")
        return "DELIVERED"
