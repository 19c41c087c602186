"""Patient files reach only a signed-in user of the right clinic: the real server (server.py), over HTTP.

A browser gets an HttpOnly session cookie by trading a one-time ticket; download links are signed for
that session. A URL taken from a signed-in session must fail without the cookie, after sign-out, after
expiry and for another user; Streamlit's own media URLs need the cookie too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from core.domain import Role, SimulationType
from core.repositories.base import utcnow
from core.services.visuals import OutputSpec, SnapshotSpec
from tests.conftest import start_streamlit, stop_process
from tests.factories import make_clinic, new_frames


@pytest.fixture
def server(env: dict[str, str], infra, tmp_path: Path) -> Iterator[str]:
    process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def world(services, infra):
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=new_frames(3), queue_renditions=False)
    snapshot = services.visuals.export_snapshot(world.actor(), sim.id, SnapshotSpec(0, OutputSpec("1080p")))
    return world, snapshot.asset


def _signed_in(services, server: str, actor) -> httpx.Client:
    client = httpx.Client(base_url=server, timeout=30)
    ticket = services.sessions.sign_in_ticket(actor, method="test")
    answer = client.get("/auth/session", params={"ticket": ticket, "next": "/gallery?x=1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/gallery?x=1"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert answer.headers["cache-control"] == "no-store"
    return client


def _session_id(client: httpx.Client) -> str:
    return hashlib.sha256(client.cookies["tss_session"].encode()).hexdigest()


def test_a_link_works_for_its_session_and_no_one_else(services, infra, server, world):
    clinic, asset = world
    coordinator = clinic.actor()
    browser = _signed_in(services, server, coordinator)
    link = services.sessions.download_link(coordinator, _session_id(browser), asset.id)

    answer = browser.get(link)
    assert answer.status_code == 200 and answer.content == infra.store.get(asset.sha256)
    assert answer.headers["cache-control"] == "no-store"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment;") and clinic.patient.lastName.lower() not in disposition.lower()
    downloads = [e for e in infra.audit.list(clinic.clinic.id) if e.action == "download"]
    assert len(downloads) == 1 and downloads[0].userId == coordinator.id

    assert httpx.get(server + link, timeout=30).status_code == 401  # the URL alone: no cookie, no file
    other = _signed_in(services, server, clinic.actor(Role.DOCTOR))  # a colleague's session
    assert other.get(link).status_code == 403

    assert browser.get("/auth/signout", params={"next": "/"}).status_code == 303
    assert browser.get(link).status_code == 401  # signed out: the cookie is gone and the session revoked
    replay = httpx.get(server + link, cookies={"tss_session": other.cookies["tss_session"]}, timeout=30)
    assert replay.status_code == 403


def test_an_expired_link_is_refused(services, infra, server, world):
    clinic, asset = world
    actor = clinic.actor()
    browser = _signed_in(services, server, actor)
    expired = int((utcnow() - timedelta(seconds=5)).timestamp())
    keys = infra.link_keys
    signature = keys.sign(f"{asset.id}|{actor.id}|{_session_id(browser)}|{expired}".encode())
    answer = browser.get(f"/files/{asset.id}", params={"e": expired, "k": keys.current, "s": signature})
    assert answer.status_code == 403 and "expired" in answer.text


def test_a_ticket_starts_one_session_only_and_a_foreign_redirect_is_ignored(services, server, world):
    clinic, _ = world
    ticket = services.sessions.sign_in_ticket(clinic.actor(), method="test")
    first = httpx.get(f"{server}/auth/session", params={"ticket": ticket, "next": "https://evil.example/"},
                      timeout=30)
    assert first.status_code == 303 and first.headers["location"] == "/"
    again = httpx.get(f"{server}/auth/session", params={"ticket": ticket}, timeout=30)
    assert again.status_code == 403 and "tss_session" not in again.headers.get("set-cookie", "")


def test_a_disabled_user_loses_the_session_at_once(services, infra, server, world):
    clinic, asset = world
    actor = clinic.actor()
    browser = _signed_in(services, server, actor)
    link = services.sessions.download_link(actor, _session_id(browser), asset.id)
    services.sessions.update_user(clinic.actor(Role.ADMIN), actor.id, active=False)
    assert browser.get(link).status_code == 401


def test_presenters_cannot_fetch_a_draft_file(services, server, world):
    clinic, asset = world
    presenter = clinic.actor(Role.PRESENTER)
    browser = _signed_in(services, server, presenter)
    answer = browser.get(services.sessions.download_link(presenter, _session_id(browser), asset.id))
    assert answer.status_code == 404


def test_streamlit_media_urls_need_the_session_cookie(services, server, world):
    clinic, _ = world
    anonymous = httpx.get(f"{server}/media/0123456789abcdef.png", timeout=30)
    assert anonymous.status_code == 401
    browser = _signed_in(services, server, clinic.actor())
    assert browser.get("/media/0123456789abcdef.png").status_code == 404  # past the guard: Streamlit's answer
