"""UI responsiveness in a real browser (Debian Chromium via Playwright) against `streamlit run server.py`
on fresh embedded servers seeded with the mini demo.

- slider_to_image_ms_p95: a stage step (arrow key on the stage slider) until the new picture is shown
- page_open_ms_p95: opening each page of a coordinator by its address until its title is drawn
- reload_restores_state: 1 when a reload lands on the same patient, simulation and stage, else 0

Usage: .venv/bin/python bench/ui_bench.py [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from _harness import bench_services, p95

from tests.conftest import CHROMIUM, CHROMIUM_FLAGS, start_streamlit, stop_process

PAGES = ("", "simulation", "compare", "gallery", "exports", "decks", "imports")
TITLES = {"": "Patients", "simulation": "Simulation", "compare": "Compare", "gallery": "Gallery",
          "exports": "Exports", "decks": "Presentations", "imports": "Import simulation"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    from playwright.sync_api import expect, sync_playwright

    from core.demo.seed import seed_demo

    with bench_services() as (services, env), tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        seed_demo(services, profile="mini", inline=True)
        infra = services.infra
        clinic_id = next(i for i in infra.clinics.list_ids() if infra.clinics.get(i).slug == "brightside")
        patient = infra.patients.find_by_chart_number(clinic_id, "BO-1001")
        active = next(s for s in infra.simulations.list_for_patient(clinic_id, patient.id)
                      if s.name == "ClinCheck upper & lower" and s.status.value == "ACTIVE")
        sim = infra.simulations.get(clinic_id, active.id)
        last = max(f.stage for f in sim.frames)
        process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, Path(tmp) / "streamlit.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.set_default_timeout(60_000)
                page.goto(f"{url}/simulation?sim={sim.id}&stage=0")
                page.get_by_test_id("stSelectbox").click()
                page.get_by_role("option", name="coordinator@brightside.example").click()
                with page.expect_response(lambda r: "/auth/session" in r.url):
                    page.get_by_role("button", name="Sign in").click()
                page.wait_for_load_state()
                expect(page.get_by_role("heading", name="Start")).to_be_visible()

                # Stage steps: forwards to the last stage, then back, and so on.
                picture = page.locator(".st-key-frame-picture img").first
                slider = page.get_by_role("slider", name="Stage", exact=False).last
                samples, stage, direction = [], 0, 1
                for _ in range(args.steps):
                    if not 0 <= stage + direction <= last:
                        direction = -direction
                    before = picture.get_attribute("src")
                    slider.focus()
                    start = time.perf_counter()
                    slider.press("ArrowRight" if direction > 0 else "ArrowLeft")
                    page.wait_for_function("([sel, src]) => { const i = document.querySelector(sel);"
                                           " return i && i.getAttribute('src') !== src && i.complete; }",
                                           arg=[".st-key-frame-picture img", before], polling="raf")
                    samples.append((time.perf_counter() - start) * 1000)
                    stage += direction
                slider_ms = p95(samples)

                # Pages by address (a reload of each), title drawn.
                opens = []
                for _ in range(args.rounds):
                    for path in PAGES:
                        start = time.perf_counter()
                        page.goto(f"{url}/{path}")
                        expect(page.get_by_role("heading", name=TITLES[path], exact=True)).to_be_visible()
                        opens.append((time.perf_counter() - start) * 1000)
                page_ms = p95(opens)

                # A reload on a stage chosen in the page.
                page.goto(f"{url}/simulation?sim={sim.id}&stage=1")
                expect(page.get_by_role("heading", name=f"Stage 1 of {last}")).to_be_visible()
                slider = page.get_by_role("slider", name="Stage", exact=False).last
                slider.focus()
                slider.press("ArrowRight")
                expect(page.get_by_role("heading", name=f"Stage 2 of {last}")).to_be_visible()
                page.wait_for_url(lambda u: "stage=2" in u)
                page.reload()
                restored = 1
                try:
                    expect(page.get_by_role("heading", name=f"Stage 2 of {last}")).to_be_visible(timeout=30_000)
                    expect(page.get_by_role("combobox", name="Patient")).to_have_value(
                        re.compile("Okafor, Maya"), timeout=5_000)
                    expect(page.get_by_role("combobox", name="Simulation")).to_have_value(
                        re.compile(r"ClinCheck upper & lower · v2"), timeout=5_000)
                except AssertionError as exc:
                    restored = 0
                    print(f"reload did not restore the state: {str(exc).splitlines()[0]} at {page.url}",
                          file=sys.stderr)
                browser.close()
        finally:
            stop_process(process)
    print(f"stage steps: {len(samples)}, page opens: {len(opens)} ({len(PAGES)} pages × {args.rounds})")
    print(f"slider_to_image_ms_p95: {slider_ms:.0f}")
    print(f"page_open_ms_p95: {page_ms:.0f}")
    print(f"reload_restores_state: {restored}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
