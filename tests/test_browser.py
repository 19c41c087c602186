"""A real browser (Debian's Chromium via Playwright) against the running Streamlit app."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CHROMIUM, start_streamlit, stop_process

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="BROWSER TESTS SKIPPED: Debian's chromium is not installed "
                              "(apt-get install chromium; .ci/run does this)"),
]


@pytest.fixture
def app_url(env: dict[str, str], services, tmp_path: Path) -> Iterator[str]:
    from core.demo.seed import seed_demo

    seed_demo(services, profile="mini", inline=True)
    process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        stop_process(process)


def test_a_coordinator_signs_in_opens_a_patient_and_scrubs_frames(app_url, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(app_url)
    expect(page.get_by_text("Development sign-in")).to_be_visible()
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="coordinator@brightside.example").click()
    with page.expect_response(lambda r: "/auth/session" in r.url, timeout=30_000):  # the HttpOnly cookie
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "tss_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.reload()  # a reload keeps the user signed in
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_label("Search patients").fill("Okafor")
    page.get_by_label("Search patients").press("Enter")
    expect(page.get_by_text("Okafor, Maya").first).to_be_visible()
    page.get_by_role("button", name="Open in viewer").first.click()

    expect(page.get_by_role("heading", name="Simulation")).to_be_visible()
    page.get_by_test_id("stSelectbox").filter(has_text="Simulation").click()
    page.get_by_role("option", name="ClinCheck upper & lower · v2").click()
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("v2")  # the rerun for v2 has drawn
    expect(page.get_by_test_id("stStatusWidget").get_by_text("Running")).to_have_count(0)
    expect(page.get_by_role("heading", name="Start")).to_be_visible()
    first_src = page.get_by_test_id("stImage").first.locator("img").get_attribute("src")
    slider = page.get_by_role("slider", name="Stage", exact=False).last
    slider.focus()
    slider.press("ArrowRight")
    expect(page.get_by_text("Stage 1 of 3")).to_be_visible()  # one step at a time: a key pressed during
    slider.press("ArrowRight")  # the fragment's rerun can be lost on a loaded machine
    expect(page.get_by_text("Stage 2 of 3")).to_be_visible()
    expect(page.get_by_test_id("stImage").first.locator("img")).not_to_have_attribute("src", first_src)
    image_url = page.get_by_test_id("stImage").first.locator("img").get_attribute("src")
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:  # the picture's URL, outside the session
        urllib.request.urlopen(app_url + image_url if image_url.startswith("/") else image_url, timeout=10)
    assert refused.value.code == 401
    shot = tmp_path / "viewer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    artifacts = os.environ.get("TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "viewer.png")
