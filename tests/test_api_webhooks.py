"""Webhooks: signed deliveries, retried by an RQ job; exactly one processed event after a worker dies mid-delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from core.domain import Role, SimulationType
from core.errors import PermissionDeniedError, ValidationError
from core.launcher import free_port
from tests.conftest import wait_until
from tests.factories import make_clinic, new_frames


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "WEBHOOKS_ALLOW_LOOPBACK_HTTP": "1"}


def verify(secret: str, headers, body: bytes, tolerance: int = 300) -> bool:
    """The receiver's check, as the README documents it."""
    timestamp = headers["X-TSS-Timestamp"]
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return (abs(time.time() - int(timestamp)) <= tolerance
            and hmac.compare_digest(f"sha256={expected}", headers["X-TSS-Signature"]))


class Receiver:
    """A local webhook receiver that processes each delivery id once; its first request hangs (the worker
    is killed while it waits)."""

    def __init__(self, secret_box: dict[str, str]) -> None:
        self.requests: list[tuple[str, bool]] = []  # (delivery id, signature valid)
        self.processed: dict[str, dict] = {}
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(secret_box["secret"], self.headers, body)
                receiver.requests.append((self.headers["X-TSS-Delivery"], valid))
                if len(receiver.requests) == 1:
                    receiver.first_arrived.set()
                    receiver.release.wait(30)  # never answered: the sender dies meanwhile
                    return
                if valid:
                    receiver.processed.setdefault(self.headers["X-TSS-Delivery"], json.loads(body))
                self.send_response(200 if valid else 401)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, dict[str, str]]]:
    box: dict[str, str] = {}
    r = Receiver(box)
    yield r, box
    r.close()


def test_only_public_https_urls_and_only_admins_register_webhooks(services, infra):
    world = make_clinic(infra)
    admin = world.actor(Role.ADMIN)
    with pytest.raises(ValidationError, match="https://"):
        services.webhooks.register(admin, name="CRM", url="http://crm.example.com/hook", events=["export.done"])
    for internal in ("https://10.0.0.5/hook", "https://127.0.0.1:6379/", "https://[::1]/x", "https://169.254.169.254/"):
        with pytest.raises(ValidationError, match="public address"):
            services.webhooks.register(admin, name="CRM", url=internal, events=["export.done"])
    with pytest.raises(ValidationError, match="Choose events"):
        services.webhooks.register(admin, name="CRM", url="https://crm.example.com/hook", events=["export.lost"])
    with pytest.raises(PermissionDeniedError):
        services.webhooks.register(world.actor(), name="CRM", url="https://crm.example.com/hook",
                                   events=["export.done"])
    endpoint = services.webhooks.register(admin, name="CRM", url="https://crm.example.com/hook",
                                          events=["export.done", "simulation.approved"])
    assert len(endpoint.secret) == 64 and services.webhooks.list(admin)[0].secret == ""  # shown once


@pytest.mark.worker
def test_a_webhook_reaches_the_receiver_once_after_the_worker_dies_mid_delivery(services, infra, worker, receiver):
    hook, box = receiver
    world = make_clinic(infra)
    endpoint = services.webhooks.register(world.actor(Role.ADMIN), name="Patient Communication",
                                          url=f"http://127.0.0.1:{hook.port}/hooks/tss",
                                          events=["simulation.approved", "export.failed"])
    box["secret"] = endpoint.secret
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=new_frames(2), queue_renditions=False)
    services.review.approve(world.actor(Role.DOCTOR), sim.id)

    assert hook.first_arrived.wait(60), "the first delivery attempt never arrived"
    horses = psutil.Process(worker.pid).children()
    assert horses, "the forking worker should deliver in a work-horse process"
    for horse in horses:
        horse.send_signal(signal.SIGKILL)
    hook.release.set()

    deliveries = wait_until(lambda: [d for d in services.webhooks.deliveries(world.actor(Role.ADMIN), endpoint.id)
                                     if d.state == "DELIVERED"], timeout=90, what="the retried delivery")
    time.sleep(3)  # nothing more arrives after it was acknowledged
    assert len(deliveries) == 1 and len(hook.processed) == 1
    delivery_ids = {d for d, _ in hook.requests}
    assert delivery_ids == {deliveries[0].id} and len(hook.requests) == 2 and all(v for _, v in hook.requests)
    event = hook.processed[deliveries[0].id]
    assert event["event"] == "simulation.approved" and event["data"]["simulationId"] == sim.id
    assert world.patient.lastName not in json.dumps(event)  # ids only, never patient data


def test_an_admin_registers_a_webhook_on_the_integrations_page(app_env, services, infra):
    from streamlit.testing.v1 import AppTest

    from core.config import PROJECT_ROOT

    world = make_clinic(infra)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = world.users[Role.ADMIN].id
    at.run()
    at.switch_page("pages/integrations.py").run()
    at.text_input[-2].input("Patient <b>Communication</b>")
    at.text_input[-1].input("https://crm.example.com/hooks/tss")
    next(b for b in at.button if b.label == "Register webhook").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = [c.value for c in at.code]
    [hook] = services.webhooks.list(world.actor(Role.ADMIN))
    assert len(shown) == 1 and len(shown[0]) == 64 and hook.events == ("export.done", "export.failed",
                                                                       "simulation.approved")
    assert any("Patient \\<b\\>Communication" in m.value for m in at.markdown)  # escaped where shown
    at.run()
    at.toggle(key=f"hook-on-{hook.id}").set_value(False).run()
    assert not at.exception and services.webhooks.list(world.actor(Role.ADMIN))[0].enabled is False


def test_a_delivery_whose_job_was_lost_is_queued_again_by_maintenance(services, infra):
    from datetime import timedelta

    from rq.job import Job
    from rq.serializers import JSONSerializer

    world = make_clinic(infra)
    endpoint = services.webhooks.register(world.actor(Role.ADMIN), name="CRM", url="https://crm.example.com/hook",
                                          events=["simulation.approved"])
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=new_frames(1), queue_renditions=False)
    services.review.approve(world.actor(Role.DOCTOR), sim.id)
    [delivery] = services.webhooks.deliveries(world.actor(Role.ADMIN), endpoint.id)
    job_id = f"webhook-{delivery.id}"
    assert services.webhooks.reconcile(world.clinic.id) == 0  # queued and too young: left alone
    Job.fetch(job_id, connection=infra.redis, serializer=JSONSerializer).delete()  # Redis lost it
    infra.db["webhook_deliveries"].update_one({}, {"$set": {"createdAt": delivery.createdAt - timedelta(minutes=5)}})
    assert services.webhooks.reconcile(world.clinic.id) == 1
    assert Job.fetch(job_id, connection=infra.redis, serializer=JSONSerializer).args == [world.clinic.id, delivery.id]
    assert services.webhooks.reconcile(world.clinic.id) == 0  # its job is back: not queued twice
