"""Rendered exports as background jobs: real forking workers, real Redis, real faults."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psutil
import pytest

from core.config import load_settings
from core.domain import AssetKind, ExportState, ExportType, Role, SimulationType
from core.errors import ValidationError
from core.infra import build_infrastructure
from core.launcher import free_port, start_redis
from core.rendering.probe import pdf_info, probe_media
from core.services import services_for
from core.services.exports import RenderRequest
from tests.conftest import start_worker, stop_worker, wait_until
from tests.factories import make_clinic, new_frames

pytestmark = pytest.mark.worker


@pytest.fixture
def world(infra):
    return make_clinic(infra)


def _sim(services, world, *, stages=6, size=(320, 180), approve=True):
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(stages, size=size),
        queue_renditions=False)
    if approve:
        services.review.approve(world.actor(Role.DOCTOR), sim.id)
    return sim


def _done(services, actor, export_id, timeout=120):
    return wait_until(lambda: (e := services.exports.get(actor, export_id)).state
                      in (ExportState.DONE, ExportState.FAILED, ExportState.CANCELLED) and e,
                      timeout=timeout, what=f"export {export_id}")


def _file(services, export, tmp_path: Path, suffix: str) -> Path:
    asset = services.infra.assets.get(export.clinicId, export.asset_id)
    path = tmp_path / f"out.{suffix}"
    path.write_bytes(services.infra.store.get(asset.sha256))
    return path


def _no_temp_files(settings) -> None:
    tmp = settings.data_dir / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_a_video_is_an_h264_high_mp4_with_faststart(services, world, worker, tmp_path, settings):
    sim = _sim(services, world)
    request = RenderRequest(ExportType.VIDEO, preset="720p", seconds_per_stage=0.4, hold_final_seconds=0.5,
                            title_card=False, end_card=False)
    export = _done(services, world.actor(), services.exports.request(world.actor(), sim.id, request).id)
    assert export.state is ExportState.DONE, export.error
    info = probe_media(_file(services, export, tmp_path, "mp4"))
    assert (info["codec"], info["pix_fmt"], info["width"], info["height"]) == ("h264", "yuv420p", 1280, 720)
    assert info["profile"] == "High" and info["faststart"] is True
    assert info["fps"] == pytest.approx(30)
    assert info["duration"] == pytest.approx(6 * 0.4 + 0.5, abs=0.1)
    assert export.videoUrl == f"asset://{export.asset_id}"
    _no_temp_files(settings)


def test_ten_identical_requests_render_once(services, world, worker, infra):
    sim = _sim(services, world)
    request = RenderRequest(ExportType.GIF, seconds_per_stage=0.3)
    results = []
    barrier = threading.Barrier(10)

    def ask() -> None:
        barrier.wait()
        results.append(services.exports.request(world.actor(), sim.id, request))

    threads = [threading.Thread(target=ask) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in results}) == 1
    export = _done(services, world.actor(), results[0].id)
    assert export.state is ExportState.DONE, export.error
    assert infra.db.simulation_exports.count_documents({}) == 1
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 1
    assert export.attempts == 1


def test_a_print_pdf_has_its_pages_at_300_dpi(services, world, worker, tmp_path):
    sim = _sim(services, world, size=(1280, 720))
    export = _done(services, world.actor(), services.exports.request(
        world.actor(), sim.id, RenderRequest(ExportType.PDF, paper="letter", orientation="landscape")).id)
    assert export.state is ExportState.DONE, export.error
    info = pdf_info(_file(services, export, tmp_path, "pdf"))
    assert info["pages"] >= 3
    width, height = info["page_sizes_mm"][0]
    assert (round(width, 1), round(height, 1)) == (279.4, 215.9)
    assert info["images"] and min(image["dpi"] for image in info["images"]) >= 299.9
    assert world.patient.lastName not in " ".join(str(v) for v in info["info"].values())


def test_a_bad_request_is_refused_before_anything_is_recorded(services, world, infra):
    sim = _sim(services, world)
    with pytest.raises(ValidationError, match="Stages 9–12 are outside"):
        services.exports.request(world.actor(), sim.id, RenderRequest(ExportType.VIDEO, first_stage=9, last_stage=12))
    assert infra.db.simulation_exports.count_documents({}) == 0


def _busy_request() -> RenderRequest:
    # long enough to be caught mid-render: morph interpolation of 1080p frames
    return RenderRequest(ExportType.VIDEO, preset="1080p", transition="morph", seconds_per_stage=1.0,
                         title_card=False, end_card=False)


def test_a_killed_work_horse_is_retried_and_leaves_one_record_one_asset_and_no_temp_file(
        services, world, worker, infra, settings):
    sim = _sim(services, world, stages=8, size=(1920, 1080))
    export = services.exports.request(world.actor(), sim.id, _busy_request())
    wait_until(lambda: services.exports.get(world.actor(), export.id).progress >= 5, timeout=60, what="render start")
    horses = psutil.Process(worker.pid).children()
    assert horses, "the forking worker should render in a work-horse process"
    for horse in horses:
        horse.send_signal(signal.SIGKILL)
    done = _done(services, world.actor(), export.id, timeout=150)
    assert done.state is ExportState.DONE, done.error
    assert done.attempts >= 2
    assert infra.db.simulation_exports.count_documents({}) == 1
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 1
    _no_temp_files(settings)


def test_a_killed_worker_is_detected_and_another_worker_finishes_the_render(services, world, env, infra):
    first = start_worker(env, infra.redis)
    sim = _sim(services, world, stages=8, size=(1920, 1080))
    export = services.exports.request(world.actor(), sim.id, _busy_request())
    try:
        wait_until(lambda: services.exports.get(world.actor(), export.id).progress >= 5, timeout=60,
                   what="render start")
        os.killpg(first.pid, signal.SIGKILL)  # the whole worker and its horse, as a machine crash would
        first.wait(10)
        second = start_worker(env, infra.redis)
        try:
            done = _done(services, world.actor(), export.id, timeout=120)  # the bound is 2 minutes
            assert done.state is ExportState.DONE, done.error
        finally:
            stop_worker(second)
    finally:
        stop_worker(first)
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 1


def test_with_redis_down_the_export_waits_as_pending_and_completes_when_redis_returns(env, tmp_path, world, infra):
    port = free_port()
    redis_dir = tmp_path / "own-redis"
    child, url = start_redis(redis_dir, port)
    own_env = {**env, "REDIS_URL": url}
    own = services_for(build_infrastructure(load_settings(own_env)))
    sim = _sim(own, world)
    child.stop()  # Redis goes away
    export = own.exports.request(world.actor(), sim.id, RenderRequest(ExportType.ASSETS))
    assert export.state is ExportState.PENDING
    child, _ = start_redis(redis_dir, port)  # Redis is back (same port, same data)
    worker = start_worker(own_env, own.infra.redis)
    try:
        done = _done(own, world.actor(), export.id, timeout=90)
        assert done.state is ExportState.DONE, done.error
    finally:
        stop_worker(worker)
        child.stop()


def test_cancelling_a_running_render_stops_it_and_keeps_nothing(services, world, worker, infra, settings):
    sim = _sim(services, world, stages=8, size=(1920, 1080))
    export = services.exports.request(world.actor(), sim.id, _busy_request())
    wait_until(lambda: services.exports.get(world.actor(), export.id).progress >= 5, timeout=60, what="render start")
    services.exports.cancel(world.actor(), export.id)
    done = _done(services, world.actor(), export.id, timeout=60)
    assert done.state is ExportState.CANCELLED
    assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 0
    _no_temp_files(settings)
    again = services.exports.retry(world.actor(), export.id)
    assert again.state is ExportState.QUEUED


def test_a_worker_refuses_an_export_whose_requester_lost_the_permission(services, world, infra):
    sim = _sim(services, world)
    export = services.exports.request(world.actor(), sim.id, RenderRequest(ExportType.ASSETS))
    services.sessions.update_user(world.actor(Role.ADMIN), world.users[Role.COORDINATOR].id, role=Role.ADMIN)
    result = services.exports.run(world.clinic.id, export.id)
    assert result.state is ExportState.FAILED and "imaging:export" in result.error
    other = make_clinic(infra, "beta", chart="B-9")
    from core.errors import NotFoundError

    with pytest.raises(NotFoundError):
        services.exports.run(other.clinic.id, export.id)  # a forged id from another clinic


def test_a_coordinator_queues_a_video_from_the_page_and_downloads_it(services, world, worker, env, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from core.config import PROJECT_ROOT

    sim = _sim(services, world, stages=4)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=60)
    at.session_state["user_id"] = world.users[Role.COORDINATOR].id
    at.session_state["simulation_id"] = sim.id
    _, web_session = services.sessions.start_web_session(services.sessions.sign_in_ticket(world.actor(),
                                                                                          method="test"))
    at.session_state["web_session_id"] = web_session.id  # as after the browser fetched its cookie
    at.run()
    at.switch_page("pages/simulation.py").run()
    at.toggle(key="render-open").set_value(True).run()
    assert not at.exception and not at.error
    at.selectbox(key=f"rv-size-{sim.id}").select("720p").run()
    at.button(key=f"render-go-{sim.id}").click().run()
    assert not at.exception and not at.error
    export = services.infra.db.simulation_exports.find_one({"exportType": "VIDEO"})
    assert export is not None
    done = _done(services, world.actor(), str(export["_id"]))
    assert done.state is ExportState.DONE, done.error
    at.run()  # the progress panel now shows the finished export
    assert any("ready" in s.value for s in at.success)
    links = [b.proto.url for b in at.get("link_button")]
    assert any(url.startswith("/files/") and "&s=" in url for url in links), "a signed download link is offered"
    assert not at.get("download_button"), "patient files never go through Streamlit's media store"
    st.cache_resource.clear()
