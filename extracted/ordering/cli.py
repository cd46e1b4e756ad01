"""``strangler ordering``: migrate and serve the ordering service; list waiting sagas."""

from __future__ import annotations

import json

import click

from extracted.servicekit.cli import (
    ServiceError,
    data_dir_option,
    db_url_option,
    service_group,
    setup_django,
)

ordering = service_group("ordering", 8002, "Run the extracted ordering service (Django + DRF, "
                         "its own database).")


@ordering.command()
@click.option("--older-than", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Only sagas waiting at least this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@data_dir_option
@db_url_option("ordering")
def sagas(older_than: float, as_json: bool, data_dir: str | None,
          database_url: str | None) -> None:
    """List checkout sagas waiting for the monolith's reply; exit 1 when there are some.

    \b
    pay_requested     the payment and stock reservation were asked for, no answer yet
    refund_requested  the compensation (refund, release) was asked for, no answer yet
    A saga that waits long points at a stopped relay or a dead letter (`strangler relay
    dead-letters list`); docs/extracted-ordering.md says what to do.
    """
    setup_django("ordering", data_dir, database_url)
    from django.db import DatabaseError

    from extracted.ordering.saga import waiting

    try:
        rows = waiting(older_than)
    except DatabaseError as exc:
        reason = " ".join(str(exc).split())
        raise ServiceError(f"cannot read the sagas: {reason}; run `strangler ordering "
                           "migrate` or check ORDERING_DATABASE_URL / --data-dir") from None
    if as_json:
        click.echo(json.dumps({"waiting": rows}, sort_keys=True))
    elif not rows:
        click.echo("no saga is waiting")
    else:
        click.echo(f"{'order':>8}  {'state':<17} {'waiting':>9}  started")
        for row in rows:
            click.echo(f"{row['order_id']:>8}  {row['state']:<17} "
                       f"{row['waiting_seconds']:>8.1f}s  {row['started_at']}")
        click.echo(f"{len(rows)} saga(s) waiting")
    if rows:
        raise SystemExit(1)
