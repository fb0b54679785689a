"""The `inferfleet` command: database migrations, models, keys, schedules, and services.

Services start by module path (`python -m api`, `python -m worker`), so this shared
package never imports a service. `inferfleet jobs …` and `inferfleet batches …` are the
client distribution's commands (`inferfleet-client`), which talk to the API over HTTP.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import ProgrammingError

from inferfleet.batches import schedules
from inferfleet.clients.db import make_engine
from inferfleet.clients.objectstore import make_s3_client
from inferfleet.errors import InferfleetError
from inferfleet.models import registry
from inferfleet.models.publish import publish, restore
from inferfleet.settings import Settings, load_settings
from inferfleet.tenants import keys


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings, pool_size=1)
    try:
        yield engine
    finally:
        engine.dispose()


def _db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from alembic.config import Config

    from alembic import command

    config = Config(str(args.config))
    config.attributes["database_url"] = settings.database_url.get_secret_value()
    command.upgrade(config, "head")
    return 0


def _models_publish(settings: Settings, args: argparse.Namespace) -> int:
    with _engine(settings) as engine:
        version = publish(
            settings,
            engine,
            make_s3_client(settings),
            args.dir,
            name=args.name,
            alias=args.alias,
            reuse_current=args.if_changed,
        )
    print(
        json.dumps(
            {
                "name": version.name,
                "version": str(version.version),
                "artifact_uri": version.artifact_uri,
                "sha256": version.sha256,
                "alias": args.alias,
            }
        )
    )
    return 0


def _models_list(settings: Settings, args: argparse.Namespace) -> int:
    with _engine(settings) as engine, engine.connect() as conn:
        for v in registry.list_versions(conn):
            pointing = [a for a, n in registry.aliases(conn, v.name).items() if n == v.version]
            print(f"{v.name}\t{v.version}\t{','.join(sorted(pointing)) or '-'}\t{v.artifact_uri}")
    return 0


def _models_show(settings: Settings, args: argparse.Namespace) -> int:
    with _engine(settings) as engine, engine.connect() as conn:
        print(registry.describe(conn, args.name).model_dump_json(indent=2))
    return 0


def _models_alias(settings: Settings, args: argparse.Namespace) -> int:
    with _engine(settings) as engine, engine.begin() as conn:
        registry.set_alias(conn, args.name, args.alias, args.version)
    print(f"{args.name}: {args.alias} -> {args.version}")
    return 0


def _models_restore(settings: Settings, args: argparse.Namespace) -> int:
    try:
        with _engine(settings) as engine:
            report = restore(settings, engine, make_s3_client(settings))
    except ProgrammingError:
        print("models: the database has no registry yet (run `inferfleet db upgrade`)")
        return 0
    for label in report.restored:
        print(f"models: re-uploaded {label} from the local cache")
    for label in report.missing:
        print(f"models: {label} is missing from S3 and from the local cache; publish it again")
    print(
        f"models: {len(report.present)} present, {len(report.restored)} restored, "
        f"{len(report.missing)} missing"
    )
    return 1 if report.missing else 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    with _engine(settings) as engine, engine.begin() as conn:
        made = keys.create_key(conn, args.tenant, args.scope)
    # Scripts parse this line: exactly these fields, nothing else on stdout.
    print(
        json.dumps(
            {
                "key": made.key,
                "tenant": made.record.tenant,
                "scope": made.record.scope,
                "webhook_secret": made.webhook_secret,
            }
        )
    )
    return 0


def _schedules_list(settings: Settings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    with _engine(settings) as engine, engine.connect() as conn:
        stored = schedules.list_schedules(conn)
    for s in stored:
        try:
            rule = s.rule
            upcoming = [
                t.astimezone(rule.tz).isoformat() for t in schedules.next_runs(rule, now, args.next)
            ]
        except (InferfleetError, ValueError) as e:
            upcoming = [f"cannot be evaluated: {e}"]
        print(
            f"{s.name}\t{s.cron}\t{s.timezone}\t{s.tenant}\t{s.model}:{s.version}\t"
            f"{'catch-up' if s.catch_up else 'no-catch-up'}\tnext: {', '.join(upcoming)}"
        )
    return 0


# (command, module it runs, what it does), for `inferfleet --help`.
SERVICES: tuple[tuple[str, str, str], ...] = (
    ("api", "api", "serve the API"),
    ("worker", "worker", "run a worker"),
    ("scheduler", "scheduler", "run the scheduler's Celery worker or beat"),
    ("autoscale", "autoscaler", "scale local workers as KEDA and the HPA would"),
)


# Command groups of the client distribution's CLI, reached as `inferfleet <group> …`.
CLIENT_GROUPS: tuple[tuple[str, str], ...] = (
    ("jobs", "submit, read and wait for jobs over the API (inferfleet-client jobs)"),
    ("batches", "create and watch batches over the API (inferfleet-client batches)"),
)


def _run_client(group: str, extra: list[str]) -> int:
    from inferfleet_client.cli import main as client_main

    return client_main([group, *extra], prog="inferfleet")


def _run_module(module: str, extra: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", module, *extra])


def parser() -> argparse.ArgumentParser:
    """The command line, for `main` and for `--help`."""
    top = argparse.ArgumentParser(prog="inferfleet", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    up = db.add_parser("upgrade", help="apply every Alembic migration")
    up.add_argument("--config", type=Path, default=Path("alembic.ini"))
    up.set_defaults(run=_db_upgrade)

    models = sub.add_parser("models", help="model registry").add_subparsers(
        dest="action", required=True
    )
    pub = models.add_parser("publish", help="upload a package folder and register a version")
    pub.add_argument("dir", type=Path)
    pub.add_argument("--name", help="model name (default: the manifest's)")
    pub.add_argument("--alias", default=registry.DEFAULT_ALIAS, help="alias to point at it")
    pub.add_argument(
        "--if-changed",
        action="store_true",
        help="register nothing if the alias already points at identical bytes",
    )
    pub.set_defaults(run=_models_publish)
    models.add_parser("list", help="every registered version").set_defaults(run=_models_list)
    show = models.add_parser("show", help="a model's versions, schemas and aliases, as JSON")
    show.add_argument("name")
    show.set_defaults(run=_models_show)
    alias = models.add_parser("alias", help="point an alias at a version")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version", type=int)
    alias.set_defaults(run=_models_alias)
    models.add_parser(
        "restore", help="re-upload artifacts the object store lost, from the local cache"
    ).set_defaults(run=_models_restore)

    keys_cmd = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys_cmd.add_parser("create", help="make a key; prints it once, as JSON")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scope", required=True, choices=keys.SCOPES)
    create.set_defaults(run=_keys_create)

    schedules_cmd = sub.add_parser("schedules", help="batch schedules").add_subparsers(
        dest="action", required=True
    )
    listing = schedules_cmd.add_parser("list", help="every schedule and its next runs")
    listing.add_argument("--next", type=int, default=3, help="how many next runs to show")
    listing.set_defaults(run=_schedules_list)

    # Each service's command line is built once, by the service (`parser()` in
    # api/__main__.py, worker/__main__.py, scheduler/__main__.py, autoscaler/main.py): every
    # option, --help included, goes to `python -m <service>`.
    for command, module, what in SERVICES:
        sub.add_parser(
            command, add_help=False, help=f"{what} (python -m {module}; --help: its options)"
        ).set_defaults(module=module)
    # The client's commands parse their own options, --help included.
    for group, what in CLIENT_GROUPS:
        sub.add_parser(group, add_help=False, help=f"{what}; --help: its commands").set_defaults(
            client_group=group
        )
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `inferfleet` console script."""
    top = parser()
    args, extra = top.parse_known_args(argv)
    if getattr(args, "module", None):
        return _run_module(args.module, extra)
    if getattr(args, "client_group", None):
        return _run_client(args.client_group, extra)
    if extra:
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        return int(args.run(load_settings(), args))
    except InferfleetError as e:
        print(f"inferfleet: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
