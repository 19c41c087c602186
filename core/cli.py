"""Admin command line: `python -m core.cli --help`. Commands act as a named user (`--as EMAIL`).

Against `make run`'s embedded servers it finds them through `DATA_DIR/run/endpoints.json`;
otherwise set MONGODB_URI / REDIS_URL as for the app.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from core.config import Settings, load_settings
from core.errors import StudioError


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
    from core.db import ensure_indexes
    from core.services import build_services

    services = build_services(settings)
    ensure_indexes(services.infra.db)
    return services


def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    from core.demo.seed import seed_demo

    count = seed_demo(_services(settings), profile=args.profile, inline=not args.queue,
                      progress=lambda msg: print(msg, flush=True))
    print(f"seeded {count} demo simulations")
    return 0


def cmd_patients(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    actor = services.sessions.actor_by_email(args.as_user, args.clinic)
    for patient in services.patients.search(actor, args.search or ""):
        print(f"{patient.id}  {patient.chartNumber:<10} {patient.display_name}  (born {patient.dateOfBirth})")
    return 0


def cmd_simulations(args: argparse.Namespace, settings: Settings) -> int:
    services = _services(settings)
    actor = services.sessions.actor_by_email(args.as_user, args.clinic)
    overview = services.patients.overview(actor, args.patient_id, include_archived=True)
    for series in overview.series:
        print(f"{series.title} [{series.simulationType.value}]"
              f"{' — ' + series.treatment.name if series.treatment else ''}")
        for sim in series.versions:
            approved = "approved" if sim.isApproved else "draft"
            print(f"  v{sim.version:<3} {sim.id}  {sim.status.value:<10} {approved:<8} "
                  f"{sim.sourceSystem or '-':<12} {sim.frameCount:>4} frames  {sim.createdAt:%Y-%m-%d %H:%M}")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args, cli_settings())
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
