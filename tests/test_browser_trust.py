"""The approval walk in a real browser: a coordinator renders a video of a draft, a doctor approves the
version, the coordinator makes a deck, and a presenter builds and downloads it — the deck's video, decoded,
has no DRAFT frame (the build renders it again from the approved version)."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from core.domain import SimulationType
from tests.conftest import CHROMIUM, start_streamlit, stop_process
from tests.factories import draft_fraction, make_clinic, teal_frames

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="BROWSER TESTS SKIPPED: Debian's chromium is not installed "
                              "(apt-get install chromium; .ci/run does this)"),
]
RENDER_TIMEOUT_MS = 240_000


@pytest.fixture
def walk(env: dict[str, str], infra, services, worker, tmp_path: Path) -> Iterator[str]:
    world = make_clinic(infra, "walk")
    services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
        name="ClinCheck", frames=teal_frames(4))
    process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        stop_process(process)


def _signed_in(browser, url: str, email: str):
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=email).click()
    with page.expect_response(lambda r: "/auth/session" in r.url, timeout=30_000):
        page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def _open(page, title: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def _download(page, url: str) -> bytes:
    """Fetch the first Download link as this browser (its session cookie), asserting the file is private."""
    href = page.get_by_test_id("stMain").get_by_role("link", name="Download").first.get_attribute("href")
    response = page.context.request.get(href if href.startswith("http") else url + href)
    assert response.ok, response.status
    assert "no-store" in response.headers["cache-control"]
    return response.body()


def _video_frames(data: bytes):
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_a_presenter_downloads_a_deck_without_a_draft_frame(walk, page):
    from playwright.sync_api import expect

    url = walk
    browser = page.context.browser

    coordinator = _signed_in(browser, url, "coordinator@walk.test")
    _open(coordinator, "Simulation")
    coordinator.get_by_text("Video, GIF, PDF or frames").click()
    coordinator.get_by_role("button", name="Render video (mp4)").click()
    expect(coordinator.get_by_test_id("stMain").get_by_text(": ready").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    assert min(draft_fraction(f) for f in _video_frames(_download(coordinator, url))) > 0.002  # the draft says DRAFT

    doctor = _signed_in(browser, url, "doctor@walk.test")
    _open(doctor, "Review")
    doctor.get_by_role("button", name="Approve this version…").click()
    doctor.get_by_role("dialog").get_by_role("button", name="Approve", exact=True).click()
    expect(doctor.get_by_role("button", name="Undo")).to_be_visible()

    _open(coordinator, "Presentations")
    coordinator.get_by_role("button", name="Create").click()
    expect(coordinator.get_by_text("(approved versions only)")).to_be_visible()

    presenter = _signed_in(browser, url, "presenter@walk.test")
    _open(presenter, "Presentations")
    expect(presenter.get_by_text("was a draft")).to_be_visible()  # the deck says it will render it again
    presenter.get_by_role("button", name="PowerPoint").click()
    expect(presenter.get_by_test_id("stMain").get_by_text(": ready").first).to_be_visible(timeout=RENDER_TIMEOUT_MS)
    with zipfile.ZipFile(io.BytesIO(_download(presenter, url))) as package:
        movies = [n for n in package.namelist() if n.startswith("ppt/media/") and n.endswith(".mp4")]
        assert movies, "the deck has no video"
        frames = _video_frames(package.read(movies[0]))
    assert frames and max(draft_fraction(f) for f in frames) < 0.0005
