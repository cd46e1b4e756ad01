"""Transactions that span contexts: found in code and in query logs, priced in the plan.

Extracting ordering taught us that the checkout's payment, one monolith transaction over
order, stock, loyalty and notifications, had to become a saga: the costliest part of the
work, and one the plan's cost did not see. These tests hold the plan to it on the demo
(code alone, and with the fixture query log), on a real project of the analysis corpus
(issue 8's, bench/analysis/corpus.py) and on small sources written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest

from analysis.facts import Statement
from analysis.mine_sql import _Miner
from analysis.pipeline import PASSES, analyze
from analysis.plan_extraction import COST_WEIGHTS
from analysis.python_facts import python_facts
from analysis.state import Analysis, Options

LOGS = Path(__file__).parent / "logs"
UP_TO_PLAN = PASSES[: [p.__name__ for p in PASSES].index("plan_extraction") + 1]


def _plan(a: Analysis) -> dict[str, dict]:
    return {s["context"]: s for s in a.plan}


def _context_of(a: Analysis, model: str) -> str:
    return next(c["name"] for c in a.contexts if model in c["models"])


# --- facts ---------------------------------------------------------------------------------

def test_atomic_decorators_and_blocks_are_found_outermost_only() -> None:
    f = python_facts(dedent("""
        from django.db import transaction

        @transaction.atomic
        def pay(order):
            order = Order.objects.get(pk=order.pk)
            order.save()
            with transaction.atomic():  # a savepoint of the same transaction
                Stock.objects.filter(pk=1).update(n=0)

        def move(a):
            with transaction.atomic(using="default"):
                Event.objects.create(name=a)
                Team.objects.create(name=a)
            Log.objects.create()

        class Wizard:
            @transaction.atomic()
            def done(self):
                cursor.execute("UPDATE stock SET n = 0")
        """), "shop.actions")
    found = {u.name: [(t.line, t.how, t.writes) for t in u.atomic] for u in f.units}
    assert found["pay"] == [(5, "decorator", ("Order", "Stock"))]
    assert found["move"] == [(12, "with", ("Event", "Team"))]  # Log is written after it
    assert found["Wizard"] == [(19, "decorator", ())]
    assert [s.sql for s in f.units[2].atomic[0].sql] == ["UPDATE stock SET n = 0"]


def test_signal_receivers_connects_and_atomic_requests_are_facts() -> None:
    f = python_facts(dedent("""
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save, pre_delete
        from django.dispatch import receiver

        @receiver(post_save, sender=Order)
        def on_paid(sender, instance, **kw): ...

        @receiver([pre_delete], sender=get_user_model())
        def on_user_gone(sender, instance, **kw): ...

        @receiver(order_paid)
        def on_custom(sender, **kw): ...

        post_save.connect(on_custom, sender="shop.Cart")
        DATABASES = {"default": {"ENGINE": "x", "ATOMIC_REQUESTS": True}}
        """), "shop.signals")
    receives = {u.name: u.receives for u in f.units if u.receives}
    assert receives == {"on_paid": (("post_save", "@Order"),),
                        "on_user_gone": (("pre_delete", "@settings.AUTH_USER_MODEL"),),
                        "on_custom": (("order_paid", ""),)}
    assert f.connects == (("post_save", "on_custom", "shop.Cart"),)
    assert f.atomic_requests
    assert not python_facts("DATABASES = {'default': {'ATOMIC_REQUESTS': False}}",
                            "s").atomic_requests


# --- query logs ----------------------------------------------------------------------------

def test_log_transactions_end_at_commit_begin_or_a_statement_outside_one() -> None:
    m = _Miner("postgres", {}, None)
    s = [  # two requests interleaved, like two workers writing one log
        Statement("BEGIN", "r1", "/pay/", "log:1", True),
        Statement("UPDATE orders SET s = 1", "r1", "/pay/", "log:2", True),
        Statement("INSERT INTO ads (id) VALUES (1)", "r2", "/ad/", "log:3", False),
        Statement("UPDATE stock SET n = 0", "r1", "/pay/", "log:4", True),
        Statement("COMMIT", "r1", "/pay/", "log:5", True),
        Statement("INSERT INTO audit (id) VALUES (1)", "r1", "/pay/", "log:6", False),
        Statement("UPDATE carts SET n = 0", "r2", "/ad/", "log:7", True),
        Statement("UPDATE ads SET n = 0", "r2", "/ad/", "log:8", True),
        Statement("SELECT 1 FROM ads", "r2", "/ad/", "log:9", False),
        Statement("UPDATE lone SET n = 0", "r2", "/ad/", "log:10", True),
    ]
    m.consume(s)
    assert m.summary.transactions == {
        ("/pay/", frozenset({"orders", "stock"})): [1, "log:2"],  # audit is after COMMIT
        ("/ad/", frozenset({"carts", "ads"})): [1, "log:7"],  # ads at log:3 was before it
    }


# --- the demo ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_code_only(monolith: Path, tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return analyze(Options(root=monolith, out=tmp_path_factory.mktemp("tx-code"),
                           ignore_app_boundaries=True), passes=UP_TO_PLAN)


def test_demo_payment_transaction_is_found_in_code_with_its_file_and_line(
        demo_code_only: Analysis) -> None:
    # given the demo's code alone (no query log); when the plan is made
    a = demo_code_only
    order, stock = _context_of(a, "orders.Order"), _context_of(a, "store.StockLevel")
    payment = _context_of(a, "orders.PaymentIntent")
    step = _plan(a)[order]
    tx = step["cross_context_transactions"]
    # then pay's @transaction.atomic is evidence, through the paid signal's receiver into
    # stock (reserve_stock) and with the payment it creates
    pay = next(e for e in tx["evidence"] if e["unit"] == "legacy_monolith.orders.actions.pay")
    assert pay["where"] == "orders/actions.py:85"
    assert pay["how"] == "transaction.atomic"
    assert {stock, payment} <= set(pay["with"])
    assert "legacy_monolith.store.actions.reserve_stock" in pay["via"]
    assert {"store_stocklevel", "orders_order"} <= set(pay["tables"])
    # and the cost prices each context the order shares a transaction with
    assert stock in tx["partners"]
    n = step["cost"]["breakdown"]["transaction_partners"]
    assert n == len(tx["partners"]) >= 3
    others = sum(COST_WEIGHTS[k] * v for k, v in step["cost"]["breakdown"].items()
                 if k != "transaction_partners")
    assert step["cost"]["score"] == pytest.approx(others + COST_WEIGHTS[
        "transaction_partners"] * n, abs=0.01)


def test_demo_catalog_shares_no_transaction_and_stays_first(demo_code_only: Analysis) -> None:
    a = demo_code_only
    product = _context_of(a, "store.Product")
    assert a.plan[0]["context"] == product
    assert a.plan[0]["cross_context_transactions"]["total"] == 0
    # the order context, written in the most transactions, goes after every context that
    # shares none
    ranks = {s["context"]: s["rank"] for s in a.plan}
    free = [s["context"] for s in a.plan if not s["cross_context_transactions"]["total"]]
    assert all(ranks[c] < ranks[_context_of(a, "orders.Order")] for c in free)


def test_demo_query_log_shows_the_payment_transaction(monolith: Path, tmp_path: Path) -> None:
    # given the fixture capture log of the demo (one paid order among its requests)
    a = analyze(Options(root=monolith, out=tmp_path, ignore_app_boundaries=True,
                        query_logs=(LOGS / "monolith_capture.jsonl",)), passes=UP_TO_PLAN)
    order, stock = _context_of(a, "orders.Order"), _context_of(a, "store.StockLevel")
    logged = [e for e in _plan(a)[order]["cross_context_transactions"]["evidence"]
              if e["how"] == "query log"]
    # then the pay endpoint's transaction, between BEGIN and its end, writes stock too
    pay = next(e for e in logged if e["unit"] == "/api/orders/{pk}/pay/")
    assert pay["where"].startswith("monolith_capture.jsonl:")
    assert stock in pay["with"]
    assert "store_stocklevel" in pay["tables"]


def test_all_three_reports_show_the_transactions(monolith: Path, tmp_path: Path) -> None:
    analyze(Options(root=monolith, out=tmp_path, ignore_app_boundaries=True))
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    data = json.loads((tmp_path / "report.json").read_text())
    assert "- transactions that span contexts: " in md
    assert "orders/actions.py:85 (transaction.atomic, legacy_monolith.orders.actions.pay): may " \
           "also write" in md
    assert "transaction partners" in md  # the cost line
    assert "orders/actions.py:85 (transaction.atomic" in html
    assert any(e["where"] == "orders/actions.py:85" for s in data["extraction_plan"]
               for e in s["cross_context_transactions"]["evidence"])


# --- small projects written here -----------------------------------------------------------

def _project(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    return root


MODELS = {
    "events/__init__.py": "", "teams/__init__.py": "",
    "events/models.py": """
        from django.db import models

        class Event(models.Model):
            name = models.CharField(max_length=9)

        class Room(models.Model):
            event = models.ForeignKey(Event, on_delete=models.CASCADE)
        """,
    "teams/models.py": """
        from django.db import models

        class Team(models.Model):
            name = models.CharField(max_length=9)

        class Member(models.Model):
            team = models.ForeignKey(Team, on_delete=models.CASCADE)
        """,
}


def test_atomic_requests_makes_each_view_a_transaction(tmp_path: Path) -> None:
    views = """
        from events.models import Event, Room
        from teams.models import Team, Member

        def create(request):
            event = Event.objects.create(name="x")
            Room.objects.create(event=event)
            Team.objects.create(name="x")

        def rooms(request):
            Room.objects.all()
            Event.objects.all()

        def team(request):
            Member.objects.filter(team__name="x")
        """
    urls = """
        from django.urls import path
        from events.views import create, rooms, team
        urlpatterns = [path("create/", create), path("rooms/", rooms), path("team/", team)]
        """
    files = {**MODELS, "events/views.py": views, "urls.py": urls}
    plain = analyze(Options(root=_project(tmp_path / "a", files), out=tmp_path / "ra"),
                    passes=UP_TO_PLAN)
    assert all(not s["cross_context_transactions"]["total"] for s in plain.plan)
    files["settings.py"] = 'DATABASES = {"default": {"ATOMIC_REQUESTS": True}}\n'
    atomic = analyze(Options(root=_project(tmp_path / "b", files), out=tmp_path / "rb"),
                     passes=UP_TO_PLAN)
    found = [e for s in atomic.plan for e in s["cross_context_transactions"]["evidence"]]
    assert {(e["how"], e["unit"], e["where"]) for e in found} == {
        ("ATOMIC_REQUESTS", "/create/", "events/views.py:5")}


# --- a real project of the corpus (issue 8) ------------------------------------------------

def _corpus_project(name: str, version: str) -> Path:
    from bench.analysis.corpus import cache_dir

    src = cache_dir() / "src"
    found = sorted(src.glob(f"{name}-{version}")) if src.is_dir() else []
    if not found:
        pytest.skip(f"{name} {version} is not in the corpus cache ({src}); fetch it with "
                    f"`.venv/bin/python -m bench.analysis --corpus`")
    return found[0]


def test_real_project_event_wizard_creates_event_and_team_in_one_transaction(
        tmp_path: Path) -> None:
    # given pretalx, as pinned in bench/analysis/corpus.py (AGPL: analysed in the cache,
    # never copied here)
    from bench.analysis.corpus import CORPUS

    root = _corpus_project("pretalx", CORPUS["pretalx"])
    a = analyze(Options(root=root, out=tmp_path, ignore_app_boundaries=True),
                passes=UP_TO_PLAN)
    event, team = _context_of(a, "event.Event"), _context_of(a, "event.Team")
    assert event != team
    # then the wizard's @transaction.atomic done(), which creates an event and its team,
    # is evidence on both contexts, and priced
    for ctx, other in ((event, team), (team, event)):
        step = _plan(a)[ctx]
        wizard = [e for e in step["cross_context_transactions"]["evidence"]
                  if e["unit"] == "pretalx.orga.views.event.EventWizard"]
        assert wizard
        assert wizard[0]["where"].startswith("src/pretalx/orga/views/event.py:")
        assert other in wizard[0]["with"]
        assert step["cost"]["breakdown"]["transaction_partners"] >= 1


def test_raw_sql_in_one_transaction_spans_the_contexts_of_its_tables(tmp_path: Path) -> None:
    # given two statements of raw SQL in one atomic block, one per context, and the same
    # two outside any transaction in another function
    jobs = """
        from django.db import connection, transaction

        def archive(pk):
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("UPDATE events_room SET event_id = NULL WHERE id = %s", [pk])
                    cursor.execute("DELETE FROM teams_member WHERE id = %s", [pk])

        def loose(pk):
            with connection.cursor() as cursor:
                cursor.execute("UPDATE events_room SET event_id = NULL WHERE id = %s", [pk])
                cursor.execute("DELETE FROM teams_member WHERE id = %s", [pk])
        """
    root = _project(tmp_path / "p", {**MODELS, "events/jobs.py": jobs})
    a = analyze(Options(root=root, out=tmp_path / "r"), passes=UP_TO_PLAN)
    # then only the atomic one is a transaction that spans both contexts, on both
    found = {(s["context"], e["where"], tuple(e["tables"])) for s in a.plan
             for e in s["cross_context_transactions"]["evidence"]}
    events, teams = _context_of(a, "events.Room"), _context_of(a, "teams.Member")
    assert found == {(c, "events/jobs.py:5", ("events_room", "teams_member"))
                     for c in (events, teams)}
