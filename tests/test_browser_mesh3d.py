"""The 3D stage viewer in a real browser: Debian's Chromium draws the Plotly Mesh3d with WebGL (SwiftShader,
software GL) from the plotly.js Streamlit serves itself, and moving the stage slider redraws it."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.domain import ImportSource
from core.importing.mesh_testing import make_arch_mesh, write_stl
from core.importing.meshes import rendering_available
from core.services.imports import Upload
from tests.conftest import CHROMIUM, start_streamlit, stop_process
from tests.factories import make_clinic

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="BROWSER TESTS SKIPPED: Debian's chromium is not installed "
                              "(apt-get install chromium; .ci/run does this)"),
    pytest.mark.skipif(rendering_available() is not None, reason=f"3D RENDERING UNAVAILABLE: {rendering_available()}"),
]

# The plot's WebGL canvas: a context that exists and draws into a non-empty buffer.
_WEBGL = """() => {
  const canvases = [...document.querySelectorAll('[data-testid="stPlotlyChart"] canvas')];
  return canvases.some(c => { const gl = c.getContext('webgl') || c.getContext('experimental-webgl');
                              return gl && gl.drawingBufferWidth > 100 && gl.drawingBufferHeight > 100; });
}"""
# A fingerprint of the vertices the plot holds now (plotly.js decodes the base64 typed arrays).
_VERTICES = """() => {
  const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const trace = plot && plot._fullData && plot._fullData[0];
  if (!trace || !trace.x || !trace.x.length) return null;
  let sum = 0; for (let i = 0; i < trace.x.length; i += 7) sum += trace.x[i] * (i % 13 + 1);
  return `${trace.x.length}:${sum}`;
}"""


@pytest.fixture
def app_url(env: dict[str, str], services, infra, tmp_path: Path) -> Iterator[str]:
    world = make_clinic(infra)
    uploads = [Upload(f"{arch.title()}_Stage_{stage:02d}.stl", write_stl(make_arch_mesh(arch, stage, 3,
                                                                                        triangles=12_000)))
               for stage in range(3) for arch in ("upper", "lower")]
    record = services.imports.start(world.actor(), source=ImportSource.STAGED_3D, patient_id=world.patient.id,
                                    uploads=uploads, name="uLab setup", options={"views": ["front"]},
                                    queue_analysis=False)
    analysed = services.imports.analyze(world.clinic.id, record.id)
    services.imports.confirm(world.actor(), record.id, order=[c.key for c in analysed.candidates], queue=False)
    sim_id = services.imports.commit(world.clinic.id, record.id).simulationId
    services.simulations.make_renditions(world.clinic.id, sim_id)
    services.meshes.prepare(world.clinic.id, sim_id)
    process, url = start_streamlit({**os.environ, **env, "DEV_SIGNIN": "1"}, tmp_path / "streamlit.log")
    try:
        yield url
    finally:
        stop_process(process)


def test_the_3d_view_draws_with_webgl_and_the_stage_slider_redraws_it(app_url, page, tmp_path):
    from playwright.sync_api import expect

    offsite_scripts: list[str] = []
    page.on("request", lambda r: offsite_scripts.append(r.url)
            if r.resource_type in ("script", "fetch", "xhr") and not r.url.startswith(app_url) else None)
    page.goto(app_url)
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="coordinator@alpha.test").click()
    with page.expect_response(lambda r: "/auth/session" in r.url, timeout=30_000):  # the session cookie
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    page.get_by_role("link", name="Simulation").click()
    expect(page.get_by_role("heading", name="Simulation")).to_be_visible()
    expect(page.get_by_role("heading", name="Start")).to_be_visible()  # the frame viewer first
    page.get_by_test_id("stButtonGroup").get_by_text("3D model", exact=True).click()

    chart = page.get_by_test_id("stPlotlyChart")
    expect(chart).to_be_visible()
    expect(page.get_by_role("heading", name="Start")).to_be_visible()
    page.wait_for_function(_WEBGL)
    before_vertices = page.wait_for_function(_VERTICES).json_value()
    before = chart.screenshot()

    slider = page.get_by_role("slider", name="Stage").last
    slider.focus()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    expect(page.get_by_text("Stage 2 of 2")).to_be_visible()
    page.wait_for_function(f"() => {{ const v = ({_VERTICES})(); return v !== null && v !== '{before_vertices}'; }}")
    page.wait_for_function(_WEBGL)
    after = chart.screenshot()
    assert after != before  # the canvas shows the moved teeth

    pixels = Image.open(io.BytesIO(after))
    assert len(np.unique(np.asarray(pixels.convert("L")))) > 50  # a shaded model, not a blank canvas
    assert offsite_scripts == []  # plotly.js comes from the app itself: no CDN, works offline
    artifacts = os.environ.get("TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(tmp_path / "mesh3d.png"), full_page=True)
        shutil.copy(tmp_path / "mesh3d.png", Path(artifacts) / "mesh3d.png")
