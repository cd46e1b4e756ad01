"""``strangler catalog``: migrate and serve the extracted catalog service, consume its events."""

from __future__ import annotations

import click

from extracted.servicekit.cli import data_dir_option, db_url_option, service_group, setup_django

catalog = service_group("catalog", 8001, "Run the extracted catalog service (Django + DRF, "
                        "its own database).")


@catalog.command()
@click.option("--broker-url", envvar="STRANGLER_BROKER_URL",
              default="amqp://guest:guest@127.0.0.1:5672/%2F", show_default=True,
              help="AMQP broker (env STRANGLER_BROKER_URL).")
@click.option("--stream", default="monolith", show_default=True,
              help="The stream, as the relay names it (--stream).")
@click.option("--partitions", default=4, show_default=True, type=click.IntRange(1, 256),
              help="As the relay's --partitions.")
@click.option("--queue-prefix", default="strangler", show_default=True,
              help="As the relay's --queue-prefix.")
@click.option("--prefetch", default=8, show_default=True, type=click.IntRange(1, 1000),
              help="Messages the broker may send ahead of the acks.")
@click.option("--max-backoff", default=5.0, show_default=True, type=click.FloatRange(0.01))
@click.option("--idle-exit", default=None, type=click.FloatRange(0.1),
              help="Stop after this many seconds without a message (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print the final counts as JSON.")
@data_dir_option
@db_url_option("catalog")
def consume(broker_url: str, stream: str, partitions: int, queue_prefix: str, prefetch: int,
            max_backoff: float, idle_exit: float | None, as_json: bool, data_dir: str | None,
            database_url: str | None) -> None:
    """Apply the relay's events from RabbitMQ (`strangler relay --transport amqp`).

    \b
    The messages received together are applied in one transaction, acked after commit; an
    aggregate's events arrive in order (one active consumer per partition queue, however
    many of these run). Stop with Ctrl-C
    or SIGTERM; kill it any way you like, unacked messages come again and are recognised.
    Dead letters, lag and pruning work as over HTTP (`strangler relay dead-letters`,
    `relay --check`, `outbox prune`, against the service's /internal/events/).
    """
    import json
    import signal

    setup_django("catalog", data_dir, database_url)
    from extracted.catalog.consume import apply_messages
    from extracted.sync import AmqpConsumer, Broker, ConsumerOptions

    broker = Broker(broker_url, stream, partitions, queue_prefix)
    consumer = AmqpConsumer(broker, apply_messages, ConsumerOptions(
        prefetch=prefetch, max_backoff=max_backoff, idle_exit=idle_exit))

    def _stop(signum: int, frame: object) -> None:
        consumer.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"consume: {broker.queue(0)} .. p{partitions - 1} -> catalog", err=True)
    status = consumer.run().to_json()
    if as_json:
        click.echo(json.dumps(status, sort_keys=True))
    else:
        click.echo(f"stream {stream}: {status['messages']} messages, {status['events']} events "
                   f"(applied {status['applied']}, duplicates {status['duplicates']}, stale "
                   f"{status['stale']}, dead letters {status['dead_letters']}), failures "
                   f"{status['failures']}")
