"""A full disk: a short, actionable message, no debris, and the app works again once space is freed.

The data directory is a small tmpfs mounted for the test (the machine's own disk is never filled)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.config import load_settings
from core.domain import AssetKind, ExportState, ExportType, Role, SimulationType
from core.errors import StorageFullError
from core.infra import build_infrastructure
from core.services import services_for
from core.services.exports import RenderRequest
from tests.conftest import start_worker, stop_worker, wait_until
from tests.factories import make_clinic, new_frames

pytestmark = pytest.mark.worker


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], check=False,
                            capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()}); needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, *, leave: int) -> Path:
    """Fill the disk up to `leave` bytes free; returns the filler file."""
    filler = disk / "filler"
    with filler.open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    with filler.open("r+b") as fh:
        fh.truncate(max(0, filler.stat().st_size - leave))
    return filler


def _debris(data_dir: Path) -> list[Path]:
    places = [data_dir / "tmp", data_dir / "assets" / ".tmp"]
    return [p for place in places if place.exists() for p in place.iterdir()]


def test_a_full_disk_fails_an_export_with_a_short_message_and_no_debris(env, infra, small_disk):
    own_env = {**env, "DATA_DIR": str(small_disk / "data")}
    own = services_for(build_infrastructure(load_settings(own_env)))
    world = make_clinic(infra)
    sim = own.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(6, size=(640, 360)),
        queue_renditions=False)
    own.review.approve(world.actor(Role.DOCTOR), sim.id)
    filler = _fill(small_disk, leave=64 * 1024)
    worker = start_worker(own_env, infra.redis)
    try:
        request = RenderRequest(ExportType.VIDEO, preset="1080p", seconds_per_stage=1.0, title_card=False,
                                end_card=False)
        export = own.exports.request(world.actor(), sim.id, request)
        failed = wait_until(lambda: (e := own.exports.get(world.actor(), export.id)).state
                            in (ExportState.DONE, ExportState.FAILED) and e, timeout=120, what="the export")
        assert failed.state is ExportState.FAILED
        assert failed.error == str(StorageFullError())
        assert "ffmpeg" not in failed.error and "@ 0x" not in failed.error  # no raw encoder output
        assert infra.db.imaging_assets.count_documents({"kind": AssetKind.EXPORT.value}) == 0
        assert _debris(small_disk / "data") == []

        # An upload on the full disk: the same message, nothing half-written.
        with pytest.raises(StorageFullError, match="disk is full"):
            own.infra.store.put(b"\1" * 256 * 1024)
        assert _debris(small_disk / "data") == []

        filler.unlink()  # the administrator frees space: the same export now succeeds
        again = own.exports.retry(world.actor(), export.id)
        assert again.state is ExportState.QUEUED
        done = wait_until(lambda: (e := own.exports.get(world.actor(), export.id)).state
                          in (ExportState.DONE, ExportState.FAILED) and e, timeout=120, what="the retried export")
        assert done.state is ExportState.DONE, done.error
    finally:
        stop_worker(worker)
