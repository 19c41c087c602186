"""The coordinator's day in a real browser (Debian Chromium): deep links through sign-in and reloads,
renders followed across pages and reloads, the Exports worklist refreshing and cancelling by itself,
approval with confirmation and undo, and layouts at a phone's and a laptop's width."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, CHROMIUM_FLAGS, start_streamlit, stop_process, stop_worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="BROWSER TESTS SKIPPED: Debian's chromium is not installed "
                              "(apt-get install chromium; .ci/run does this)"),
]

COORDINATOR = "coordinator@brightside.example"
DOCTOR = "doctor@brightside.example"

#: Every visible control label, button text or heading whose text is cut off (wider than its box).
TRUNCATED = """() => {
  const nodes = document.querySelectorAll(
    '[data-testid="stWidgetLabel"] p, [data-testid="stButtonGroup"] button p, .stButton button p,'
    + ' [data-testid="stCheckbox"] label p, [data-testid="stSelectbox"] [data-baseweb="select"] div,'
    + ' [data-testid="stExpander"] summary p, [data-testid="stPopover"] button p');
  const cut = [];
  for (const n of nodes) {
    const box = n.getBoundingClientRect();
    if (!box.width || !box.height || getComputedStyle(n).display === 'none') continue;
    if (n.scrollWidth > n.clientWidth + 1) cut.push(n.textContent.trim());
  }
  return cut;
}"""


@pytest.fixture
def journey(env: dict[str, str], services, worker, tmp_path: Path) -> Iterator[tuple[str, object]]:
    from core.demo.seed import seed_demo

    seed_demo(services, profile="mini", inline=True)
    process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, tmp_path / "streamlit.log")
    try:
        yield url, services, worker
    finally:
        stop_process(process)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


def _context(browser, width: int, height: int):
    from playwright.sync_api import expect

    expect.set_options(timeout=45_000)  # the machine is shared: allow for a slow rerun
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(45_000)
    return context


def sign_in(page, email: str) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_text("Development sign-in")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=email).click()
    with page.expect_response(lambda r: "/auth/session" in r.url, timeout=45_000):
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def _clinic_id(services) -> str:
    infra = services.infra
    return next(i for i in infra.clinics.list_ids() if infra.clinics.get(i).slug == "brightside")


def _sim(services, chart: str, name: str):
    """The series' active version, with its frames."""
    clinic_id = _clinic_id(services)
    patient = services.infra.patients.find_by_chart_number(clinic_id, chart)
    summaries = services.infra.simulations.list_for_patient(clinic_id, patient.id)
    active = next(s for s in summaries if s.name == name and s.status.value == "ACTIVE")
    return services.infra.simulations.get(clinic_id, active.id)


def _shot(page, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    artifacts = os.environ.get("TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / name)


def test_the_coordinators_day(journey, browser, tmp_path):
    from playwright.sync_api import expect

    url, services, worker = journey
    sim = _sim(services, "BO-1001", "ClinCheck upper & lower")
    last = max(f.stage for f in sim.frames)
    context = _context(browser, 1280, 800)
    page = context.new_page()

    # A link sent by a colleague, opened before signing in: the sign-in form, then exactly that stage.
    page.goto(f"{url}/simulation?sim={sim.id}&stage=2")
    sign_in(page, COORDINATOR)
    expect(page.get_by_role("heading", name=f"Stage 2 of {last}")).to_be_visible()
    assert "/simulation" in page.url and f"sim={sim.id}" in page.url
    page.reload()
    expect(page.get_by_role("heading", name=f"Stage 2 of {last}")).to_be_visible()

    # Moving the stage rewrites the address; a reload lands on the same stage.
    slider = page.get_by_role("slider", name="Stage", exact=False).last
    slider.focus()
    slider.press("ArrowRight")
    expect(page.get_by_role("heading", name=f"Stage 3 of {last}")).to_be_visible()
    page.wait_for_url(re.compile(r"stage=3"))
    page.reload()
    expect(page.get_by_role("heading", name=f"Stage 3 of {last}")).to_be_visible()

    # A render: reload in the middle of it and navigate away and back; its progress stays in view.
    page.get_by_text("Video, GIF, PDF or frames").click()
    page.get_by_role("button", name="Render video (mp4)").click()
    tray = page.get_by_test_id("stSidebar").get_by_test_id("stExpander").filter(has_text="Your jobs")
    expect(tray).to_be_visible()
    page.reload()
    expect(tray).to_be_visible()
    page.get_by_test_id("stSidebar").get_by_role("link", name="Patients").click()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    expect(tray).to_be_visible()
    # (the browser's Back first steps through the address changes made on the Patients page)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Simulation").click()
    expect(page.get_by_role("heading", name="Simulation")).to_be_visible()
    expect(page.get_by_role("heading", name=f"Stage 3 of {last}")).to_be_visible()  # the same stage again
    expect(tray).to_be_visible()

    # Exports: the row goes to Ready by itself (no click, no reload); a second render is cancelled.
    page.get_by_test_id("stSidebar").get_by_role("link", name="Exports").first.click()
    expect(page.get_by_role("heading", name="Exports")).to_be_visible()
    expect(page.get_by_role("link", name="Download").first).to_be_visible(timeout=180_000)
    # With the worker stopped, a GIF requested now waits in the queue: cancel it from the worklist.
    stop_worker(worker)
    page.get_by_test_id("stSidebar").get_by_role("link", name="Simulation").click()
    # Still open: the reload above kept it in the address (?render=1).
    expect(page.get_by_role("button", name="Render video (mp4)")).to_be_visible()
    page.locator('[data-testid="stButtonGroup"] button', has_text="Animated GIF").click()
    page.get_by_role("button", name="Render animated gif").click()
    expect(page.get_by_text("waiting for a worker").first).to_be_visible()
    _shot(page, tmp_path, "gif-requested.png")
    page.get_by_test_id("stSidebar").get_by_role("link", name="Exports").first.click()
    expect(page.get_by_role("heading", name="Exports")).to_be_visible()
    gif_row = page.locator('[class*="st-key-export-row-"]').filter(has_text="Animated GIF").first
    gif_row.get_by_role("button", name="Cancel").click()
    expect(gif_row.get_by_text("Cancelled")).to_be_visible()
    expect(gif_row.get_by_role("button", name="Retry")).to_be_visible()
    _shot(page, tmp_path, "exports-1280.png")

    # Phone, tablet, laptop and desktop widths: the frame is on the first screen, no label is cut off.
    for width, height in ((390, 844), (768, 1024), (1280, 800), (1440, 900)):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(f"{url}/simulation?sim={sim.id}&stage=1")
        expect(page.get_by_role("heading", name=f"Stage 1 of {last}")).to_be_visible()
        picture = page.locator(".st-key-frame-picture img").first
        expect(picture).to_be_visible()
        box = picture.bounding_box()
        assert box is not None and box["y"] < height, f"frame starts {box} at {width}×{height}"
        if width < 640:  # on a phone the picture comes before the stage slider
            stage_slider = page.get_by_role("slider", name="Stage", exact=False).last.bounding_box()
            assert box["y"] < stage_slider["y"], (box, stage_slider)
        assert page.evaluate(TRUNCATED) == [], f"truncated labels at {width}px"
        _shot(page, tmp_path, f"simulation-{width}.png")
        page.goto(f"{url}/compare?sim={sim.id}")
        expect(page.get_by_role("heading", name="Compare")).to_be_visible()
        preview = page.locator(".st-key-cmp-preview img").first
        expect(preview).to_be_visible()
        top = preview.bounding_box()["y"]
        assert top < height, f"compare preview starts at {top:.0f} px at {width}×{height}"
        assert page.evaluate(TRUNCATED) == [], f"truncated labels on Compare at {width}px"
        _shot(page, tmp_path, f"compare-{width}.png")
    context.close()


def test_a_doctor_approves_with_confirmation_and_undoes_it(journey, browser):
    from playwright.sync_api import expect

    url, services, _worker = journey
    sim = _sim(services, "BO-1002", "ClinCheck lower relapse")
    context = _context(browser, 1280, 800)
    page = context.new_page()
    page.goto(f"{url}/review?sim={sim.id}")
    sign_in(page, DOCTOR)
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    page.get_by_role("button", name="Approve this version…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"version {sim.version}")).to_be_visible()
    expect(dialog.get_by_test_id("stImage")).to_have_count(3)
    dialog.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("button", name="Undo")).to_be_visible()
    assert services.simulations.get(_actor(services, DOCTOR), sim.id).isApproved
    page.get_by_role("button", name="Undo").click()
    expect(page.get_by_role("button", name="Undo")).to_have_count(0)
    assert not services.simulations.get(_actor(services, DOCTOR), sim.id).isApproved
    context.close()


def _actor(services, email: str):
    from core.permissions import Actor

    return Actor(next(u for u in services.infra.users.list(_clinic_id(services)) if u.email == email))
