"""Admin command line: `python -m core.cli --help`. Commands act as a named user (`--as EMAIL`).

Against `make run`'s embedded servers it finds them through `DATA_DIR/run/endpoints.json`;
otherwise set MONGODB_URI / REDIS_URL as for the app. Text that may come from files or the database
is printed through `say`, which shows control characters and bidi overrides as escapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

from core.config import Settings, load_settings
from core.errors import StudioError, ValidationError


def endpoints_file(settings: Settings):
    return settings.data_dir / "run" / "endpoints.json"


def cli_settings() -> Settings:
    """Settings from the environment, completed by a running `make run`'s endpoints."""
    settings = load_settings()
    path = endpoints_file(settings)
    if (settings.mongodb_uri and settings.redis_url) or not path.is_file():
        return settings
    running = json.loads(path.read_text())
    env = dict(os.environ)
    for key in ("MONGODB_URI", "REDIS_URL"):
        if not env.get(key) and running.get(key):
            env[key] = running[key]
    return load_settings(env)


def _services(settings: Settings):
    from core.migrations import prepare_database
    from core.services import build_services

    services = build_services(settings)
    prepare_database(services.infra)
    return services


#: `import` exit codes: imported, failed (nothing saved), waiting in the Unmatched imports queue.
EXIT_IMPORTED, EXIT_FAILED, EXIT_UNMATCHED = 0, 1, 3


def say(text: str, *, error: bool = False) -> None:
    """Print one line; untrusted parts can neither move the cursor nor reverse the text."""
    from core.text import printable

    print(printable(text), file=sys.stderr if error else sys.stdout, flush=True)


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from core.demo.seed import seed_demo

    count = seed_demo(
        _services(settings), profile=args.profile, inline=not args.queue, progress=say
    )
    say(f"seeded {count} demo simulations")
    return 0


def cmd_patients(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    actor = services.sessions.actor_by_email(args.as_user, args.clinic)
    for patient in services.patients.search(actor, args.search or ""):
        say(f"{patient.id}  {patient.chartNumber:<10} {patient.display_name}  (born {patient.dateOfBirth})")
    return 0


def cmd_simulations(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    actor = services.sessions.actor_by_email(args.as_user, args.clinic)
    overview = services.patients.overview(actor, args.patient_id, include_archived=True)
    for series in overview.series:
        treatment = f" — {series.treatment.name}" if series.treatment else ""
        say(f"{series.title} [{series.simulationType.value}]{treatment}")
        for sim in series.versions:
            approved = "approved" if sim.isApproved else "draft"
            say(
                f"  v{sim.version:<3} {sim.id}  {sim.status.value:<10} {approved:<8} "
                f"{sim.sourceSystem or '-':<12} {sim.frameCount:>4} frames  {sim.createdAt:%Y-%m-%d %H:%M}"
            )
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Run the same import service as the page, analysing and importing in this process.

    The commit happens here and only here (the import is confirmed without queueing a job), so a
    running worker never saves the same import a second time. An export whose patient is neither
    given (--patient, --series) nor matched uniquely joins the Unmatched imports queue (exit 3).
    """
    from pathlib import Path

    from core.domain import ImportSource, ImportState, SimulationType
    from core.services.imports import Upload

    services = _services(settings)
    actor = services.sessions.actor_by_email(args.as_user, args.clinic)
    uploads = []
    for raw in args.paths:
        path = Path(raw)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        if not files or not all(p.is_file() for p in files):
            say(f"error: {raw} is not a file or a folder with files", error=True)
            return EXIT_FAILED
        base = path if path.is_dir() else path.parent
        uploads += [Upload(str(p.relative_to(base)), p.read_bytes()) for p in files]
    options = {"views": args.views.split(",")} if args.views else {}
    record = services.imports.start(
        actor,
        source=ImportSource.coerce(args.source),
        uploads=uploads,
        patient_id=args.patient,
        treatment_id=args.treatment,
        simulation_type=SimulationType.coerce(args.type),
        name=args.name or "",
        series_of=args.series,
        options=options,
        queue_analysis=False,
    )
    record = services.imports.analyze(actor.clinic_id, record.id, progress=lambda p, s: say(f"  {p:3d}% {s}"))
    if record.state is not ImportState.PREVIEW:
        say(f"error: {record.error}", error=True)
        return EXIT_FAILED
    say(f"found {len(record.candidates)} frame{'' if len(record.candidates) == 1 else 's'}")
    _describe_export(record.metadata)
    for warning in record.metadata.get("warnings") or ():
        say(f"warning: {warning}")
    patient_id = record.patientId
    proposed = record.metadata.get("patientMatch")
    if proposed is not None:  # the export names its patient: say what was matched, and why
        say(f"patient match: {record.metadata.get('matchReason', '')}")
        if patient_id is None and len(proposed) == 1:
            patient_id = proposed[0]
            say(f"importing for the matched patient {patient_id}")
        elif patient_id is not None and patient_id not in proposed:
            say(f"warning: the export does not match patient {patient_id}; imported for it as --patient says")
    if patient_id is None:
        services.imports.mark_unmatched(actor.clinic_id, record.id)
        say(f"import {record.id} waits for a patient: assign one under Unmatched imports on the Import page, "
            "or import again with --patient PATIENT_ID")
        return EXIT_UNMATCHED
    services.imports.confirm(actor, record.id, order=[c.key for c in record.candidates], name=args.name,
                             patient_id=patient_id, queue=False)
    done = services.imports.commit(actor.clinic_id, record.id, progress=lambda p, s: say(f"  {p:3d}% {s}"))
    if done.state is not ImportState.DONE:
        say(f"error: {done.error}", error=True)
        return EXIT_FAILED
    sim = services.simulations.get(actor, done.simulationId or "")
    frames = f"{sim.frameCount} frame{'' if sim.frameCount == 1 else 's'}"
    say(f"imported simulation {sim.id} version {sim.version} ({frames})")
    return EXIT_IMPORTED


def _describe_export(metadata: dict) -> None:
    """One line of what an iTero export held (no patient data)."""
    itero = metadata.get("itero")
    if not itero:
        return
    facts = [f"iTero order {itero['orderId']}"]
    if itero.get("scanDate"):
        facts.append(f"scanned {itero['scanDate']}")
    if itero.get("exportTime"):
        facts.append(f"exported {itero['exportTime']}")
    unlisted = len(itero.get("unlistedViews") or ())
    facts.append(f"{len(itero.get('views') or {})} views"
                 + (f" ({unlisted} not listed in the manifest)" if unlisted else ""))
    for jaw in itero.get("jaws") or ():
        state = f"{jaw['triangles']:,} triangles" if jaw["status"] == "ok" else jaw["status"]
        facts.append(f"{jaw['arch']} jaw {state}")
    say(" · ".join(facts))


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    started = time.monotonic()
    reports = _services(settings).audit.verify_all(from_checkpoint=args.since_checkpoint)
    bad = [r for r in reports if not r.intact]
    for report in bad:
        for problem in report.problems:
            print(f"clinic {report.clinic_id}: {problem}")
    checked = sum(r.checked for r in reports)
    print(f"checked {len(reports)} clinic(s), {checked:,} event(s) in {time.monotonic() - started:.1f} s: "
          + ("audit trail intact" if not bad else "TAMPERING DETECTED"))
    return 1 if bad else 0


def cmd_prepare_db(args: argparse.Namespace, settings: Settings) -> int:
    """Build missing indexes and run pending migrations now (after an upgrade, before users arrive)."""
    import logging

    from core.infra import build_infrastructure
    from core.migrations import prepare_database

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    ran = prepare_database(build_infrastructure(settings))
    print(f"database ready in {time.monotonic() - started:.1f} s"
          + (f"; migrations run: {', '.join(ran)}" if ran else "; nothing to migrate"))
    return 0


def cmd_gc(args: argparse.Namespace, settings: Settings) -> int:
    """Delete stored files no record refers to (left by a process that died mid-write)."""
    from core.blobs import collect_garbage

    infra = _services(settings).infra
    removed = collect_garbage(infra, older_than_seconds=args.older_than_hours * 3600, dry_run=args.dry_run)
    say(f"{'would remove' if args.dry_run else 'removed'} {removed} unreferenced file(s)")
    return 0


def cmd_sample_models(args: argparse.Namespace, _settings: Settings) -> int:
    """Write a generated staged treatment as aligner software exports it (one binary STL per arch and stage)."""
    from pathlib import Path

    from core.importing.mesh_testing import make_arch_mesh, write_stl

    if not 2 <= args.stages <= 60 or not 2_000 <= args.triangles <= 2_000_000:
        raise ValidationError("Choose 2–60 stages and 2,000–2,000,000 triangles per arch.")
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stage in range(args.stages):
        for arch in ("upper", "lower"):
            mesh = make_arch_mesh(arch, stage, args.stages, seed=args.seed, triangles=args.triangles)
            (folder / f"{arch.title()}_Stage_{stage:02d}.stl").write_bytes(write_stl(mesh))
    print(f"wrote {2 * args.stages} STL files to {folder}; import them with --source staged-3d")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    seed = sub.add_parser("seed-demo", help="create the demo clinics in an empty database")
    seed.add_argument("--profile", choices=("full", "mini"), default="full")
    seed.add_argument("--queue", action="store_true", help="render frames on the workers instead of here")
    seed.set_defaults(func=cmd_seed_demo)

    def acting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="as_user", required=True, metavar="EMAIL", help="act as this user")
        p.add_argument("--clinic", metavar="SLUG", help="the user's clinic, when the e-mail is in several")

    patients = sub.add_parser("patients", help="list the patients of your clinic")
    acting(patients)
    patients.add_argument("--search", help="last/first name prefix or chart number")
    patients.set_defaults(func=cmd_patients)

    sims = sub.add_parser("simulations", help="list a patient's simulation series and versions")
    acting(sims)
    sims.add_argument("patient_id", metavar="PATIENT_ID")
    sims.set_defaults(func=cmd_simulations)
    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every clinic's keyed hash chain; exit 1 on tampering")
    verify.add_argument("--since-checkpoint", action="store_true",
                        help="only events after each clinic's last verified checkpoint (default: everything)")
    verify.set_defaults(func=cmd_audit_verify)

    prepare = sub.add_parser("prepare-db", help="build missing indexes and run pending migrations (logged, timed)")
    prepare.set_defaults(func=cmd_prepare_db)

    gc = sub.add_parser("gc", help="delete stored files that no record refers to")
    gc.add_argument("--older-than-hours", type=float, default=24.0,
                    help="only files at least this old (default 24): never races an import in progress")
    gc.add_argument("--dry-run", action="store_true")
    gc.set_defaults(func=cmd_gc)

    imp = sub.add_parser(
        "import", help="import a simulation (files, recording, itero, staged-3d)",
        epilog="Exit status: 0 imported; 1 failed (nothing was saved); 3 the patient is not known (no --patient "
               "and no unique match): the import waits under Unmatched imports on the Import page.")
    acting(imp)
    imp.add_argument("--patient", metavar="PATIENT_ID", help="required unless --series or an iTero match is used")
    imp.add_argument("--treatment", metavar="ID")
    imp.add_argument(
        "--type", default="ALIGNER", help="ALIGNER, SMILE_DESIGN, BRACKET_PREVIEW, SUPERIMPOSITION, CUSTOM"
    )
    imp.add_argument("--source", required=True, choices=("files", "recording", "itero", "staged-3d"))
    imp.add_argument("--series", metavar="SIMULATION_ID", help="import as a new version of this series")
    imp.add_argument("--name", help="simulation name")
    imp.add_argument("--views", help="staged-3d: comma-separated views (front,left,right,upper,lower)")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.set_defaults(func=cmd_import)

    sample = sub.add_parser("sample-models", help="write a generated staged STL set (to try staged-3d imports)")
    sample.add_argument("folder", metavar="FOLDER")
    sample.add_argument("--stages", type=int, default=12)
    sample.add_argument("--triangles", type=int, default=150_000, help="per arch and stage")
    sample.add_argument("--seed", type=int, default=1, help="which malocclusion")
    sample.set_defaults(func=cmd_sample_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, cli_settings())
    except StudioError as exc:
        say(f"error: {exc}", error=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
