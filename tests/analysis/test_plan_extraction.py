"""The extraction plan: direction-aware cost, infrastructure set aside, context names.

The project is written here, not taken from the demo: a lending library whose ``library``
app (books, authors, covers) is upstream of everything and points at nothing, with
``lending`` and ``billing`` downstream of it, a ``members`` app, an audit log and an
outbox that every app writes, and a ``desk`` app holding two unrelated aggregates.
"""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from analysis.pipeline import analyze
from analysis.plan_extraction import COST_WEIGHTS
from analysis.state import Analysis, Options

MODELS = {
    "library": """
        class Author(models.Model):
            name = models.CharField(max_length=50)

        class Book(models.Model):
            title = models.CharField(max_length=50)
            author = models.ForeignKey(Author, on_delete=models.CASCADE)

        class BookCover(models.Model):
            book = models.ForeignKey(Book, on_delete=models.CASCADE)

        class Shelf(models.Model):
            books = models.ManyToManyField(Book)
        """,
    "members": """
        class Member(models.Model):
            name = models.CharField(max_length=50)

        class MemberCard(models.Model):
            member = models.ForeignKey(Member, on_delete=models.CASCADE)

        class MemberNote(models.Model):
            member = models.ForeignKey(Member, on_delete=models.CASCADE)
        """,
    "lending": """
        from library.models import Book
        from members.models import Member

        class Loan(models.Model):
            book = models.ForeignKey(Book, on_delete=models.PROTECT)
            member = models.ForeignKey(Member, on_delete=models.PROTECT)

        class Reminder(models.Model):
            loan = models.ForeignKey(Loan, on_delete=models.CASCADE)

        class LoanExtension(models.Model):
            loan = models.ForeignKey(Loan, on_delete=models.CASCADE)
        """,
    "billing": """
        from lending.models import Loan

        class Fine(models.Model):
            loan = models.ForeignKey(Loan, on_delete=models.PROTECT)

        class Payment(models.Model):
            fine = models.ForeignKey(Fine, on_delete=models.CASCADE)

        class Receipt(models.Model):
            payment = models.ForeignKey(Payment, on_delete=models.CASCADE)
        """,
    "desk": """
        class Ticket(models.Model):
            subject = models.CharField(max_length=50)

        class TicketReply(models.Model):
            ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE)

        class TicketTag(models.Model):
            ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE)

        class Room(models.Model):
            name = models.CharField(max_length=50)

        class RoomBooking(models.Model):
            room = models.ForeignKey(Room, on_delete=models.CASCADE)

        class RoomKey(models.Model):
            room = models.ForeignKey(Room, on_delete=models.CASCADE)
        """,
    "reading": """
        from library.models import Book

        class ReadingList(models.Model):
            book = models.ForeignKey(Book, null=True, on_delete=models.SET_NULL)

        class ReadingListEntry(models.Model):
            reading_list = models.ForeignKey(ReadingList, on_delete=models.CASCADE)
            note = models.CharField(max_length=50)
        """,
    "history": """
        from django.contrib.contenttypes.fields import GenericForeignKey
        from django.contrib.contenttypes.models import ContentType

        class AuditRecord(models.Model):
            content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
            object_id = models.PositiveIntegerField()
            target = GenericForeignKey("content_type", "object_id")
        """,
    "relay": """
        class OutboxMessage(models.Model):
            topic = models.CharField(max_length=50)
            payload = models.JSONField()
        """,
}

VIEWS = {
    "library": """
        from history.models import AuditRecord
        from relay.models import OutboxMessage
        from .models import Author, Book, BookCover, Shelf

        def book_list(request):
            return list(Book.objects.select_related("author")) + list(Author.objects.all())

        def book_detail(request, pk):
            return Book.objects.get(pk=pk), BookCover.objects.filter(book_id=pk)

        def shelf_list(request):
            return Shelf.objects.prefetch_related("books")

        def add_book(request):
            book = Book.objects.create(title="x", author_id=1)
            AuditRecord.objects.create(target=book)
            OutboxMessage.objects.create(topic="book", payload={})
        """,
    "members": """
        from history.models import AuditRecord
        from relay.models import OutboxMessage
        from .models import Member, MemberCard, MemberNote

        def member_detail(request, pk):
            return Member.objects.get(pk=pk), MemberCard.objects.filter(member_id=pk)

        def add_note(request, pk):
            note = MemberNote.objects.create(member_id=pk)
            AuditRecord.objects.create(target=note)
            OutboxMessage.objects.create(topic="member", payload={})
        """,
    "lending": """
        from history.models import AuditRecord
        from library.models import Book
        from members.models import Member
        from relay.models import OutboxMessage
        from .models import Loan, LoanExtension, Reminder

        def lend(request, book_id, member_id):
            book = Book.objects.get(pk=book_id)
            member = Member.objects.get(pk=member_id)
            loan = Loan.objects.create(book=book, member=member)
            AuditRecord.objects.create(target=loan)
            OutboxMessage.objects.create(topic="loan", payload={})

        def remind(request, pk):
            Reminder.objects.create(loan_id=pk)

        def extend(request, pk):
            LoanExtension.objects.create(loan_id=pk)
            return Loan.objects.get(pk=pk)
        """,
    "billing": """
        from history.models import AuditRecord
        from lending.models import Loan
        from relay.models import OutboxMessage
        from .models import Fine, Payment, Receipt

        def fine(request, loan_id):
            loan = Loan.objects.get(pk=loan_id)
            fine = Fine.objects.create(loan=loan)
            AuditRecord.objects.create(target=fine)
            OutboxMessage.objects.create(topic="fine", payload={})

        def pay(request, pk):
            loan = Loan.objects.get(fine__pk=pk)
            loan.save()  # billing writes lending's table: a cross-context write
            payment = Payment.objects.create(fine_id=pk)
            Receipt.objects.create(payment=payment)
        """,
    "reading": """
        from .models import ReadingList, ReadingListEntry

        def lists(request):
            return ReadingList.objects.all(), ReadingListEntry.objects.all()
        """,
    "desk": """
        from .models import Room, RoomBooking, RoomKey, Ticket, TicketReply, TicketTag

        def ticket(request, pk):
            return Ticket.objects.get(pk=pk), TicketReply.objects.filter(ticket_id=pk)

        def tag(request, pk):
            TicketTag.objects.create(ticket_id=pk)

        def book_room(request, pk):
            RoomBooking.objects.create(room_id=pk)
            return RoomKey.objects.filter(room_id=pk)
        """,
}


def write_project(root: Path) -> Path:
    """The lending library above, as files."""
    apps = sorted(MODELS)
    (root / "site_conf").mkdir(parents=True)
    (root / "site_conf" / "__init__.py").write_text("")
    (root / "site_conf" / "settings.py").write_text(
        f"INSTALLED_APPS = {apps!r}\nROOT_URLCONF = 'site_conf.urls'\n")
    for app in apps:
        d = root / app
        d.mkdir()
        (d / "__init__.py").write_text("")
        (d / "models.py").write_text("from django.db import models\n" + dedent(MODELS[app]))
        if app in VIEWS:
            (d / "views.py").write_text(dedent(VIEWS[app]))
    return root


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    root = write_project(tmp_path_factory.mktemp("library") / "project")
    out = tmp_path_factory.mktemp("library-out")
    return analyze(Options(root=root, out=out, ignore_app_boundaries=True, formats=("md",)))


def _context_of(a: Analysis, model: str) -> str:
    return next(c["name"] for c in a.contexts if model in c["models"])


def _step(a: Analysis, model: str) -> dict[str, object]:
    return next(s for s in a.plan if s["context"] == _context_of(a, model))


def test_upstream_context_ranks_before_its_dependents_without_a_query_log(
        library: Analysis) -> None:
    step = _step(library, "library.Book")
    order = [s["context"] for s in library.plan]
    # everything that depends on another context (holds keys into it) comes after it,
    # although those contexts are referenced less than the library
    dependents = [s["context"] for s in library.plan if s["cost"]["breakdown"]["keys_out"]]
    assert dependents
    assert all(order.index(step["context"]) < order.index(d) for d in dependents), [
        (s["context"], s["cost"]["score"]) for s in library.plan]
    # direction, not the number of keys: the reading lists hold one key into the library,
    # the library is the target of two; the one that depends goes after the one depended on
    reading = _step(library, "reading.ReadingList")
    assert reading["cost"]["breakdown"]["keys_out"] == 1
    assert step["cost"]["foreign_keys"] > reading["cost"]["foreign_keys"]
    assert order.index(step["context"]) < order.index(reading["context"])
    # contexts with no tie at all cost nothing and may go any time
    assert _step(library, "desk.Room")["cost"]["score"] == 0.0
    # the downstream contexts hold keys into the library; it holds none
    assert step["cost"]["breakdown"]["keys_out"] == 0
    assert step["cost"]["breakdown"]["keys_in"] >= 1
    assert all(fk["becomes"].startswith("plain id") for fk in step["foreign_keys_in"])


def test_cost_is_the_documented_weighted_sum_and_direction_matters(library: Analysis) -> None:
    for s in library.plan:
        b = s["cost"]["breakdown"]
        assert s["cost"]["score"] == pytest.approx(
            sum(COST_WEIGHTS[k] * n for k, n in b.items()), abs=1e-3)
    assert COST_WEIGHTS["keys_out"] > COST_WEIGHTS["keys_in"]
    assert [s["cost"]["score"] for s in library.plan] == sorted(
        s["cost"]["score"] for s in library.plan)
    # lending holds keys to library and members: its own outgoing keys are counted as such
    lending = _step(library, "lending.Loan")
    assert lending["cost"]["breakdown"]["keys_out"] == 2
    assert {fk["to"] for fk in lending["foreign_keys_out"]} == {"library.Book",
                                                                  "members.Member"}


def test_writes_to_another_contexts_table_are_found_in_code_without_a_log(
        library: Analysis) -> None:
    billing = _step(library, "billing.Fine")
    lending = _step(library, "lending.Loan")
    assert billing["cost"]["breakdown"]["writes_to_others"] == 1  # loan.save()
    assert lending["cost"]["breakdown"]["written_by_others"] == 1
    assert "lending_loan" in library.metrics["tables_written_by_multiple_contexts"]
    assert "library_book" in library.metrics["tables_accessed_by_multiple_contexts"]
    assert library.metrics["distributed_write_share"] is None  # needs requests: a log


def test_plumbing_models_are_infrastructure_not_a_context(library: Analysis) -> None:
    assert set(library.infrastructure) == {"history.AuditRecord", "relay.OutboxMessage"}
    placed = {m for c in library.contexts for m in c["models"]}
    assert not placed & set(library.infrastructure)
    names = {x["model"] for x in library.report["infrastructure"]}
    assert names == set(library.infrastructure)
    reasons = dict(library.infrastructure)
    assert any("generic relation" in r for r in reasons["history.AuditRecord"])
    assert all(s["context"] not in ("history", "relay") for s in library.plan)


def test_contexts_are_named_after_their_app_or_their_aggregate_root(library: Analysis) -> None:
    # a context that is exactly one app keeps the app's name
    assert _context_of(library, "library.Book") == "library"
    assert _context_of(library, "billing.Fine") == "billing"
    # the desk app holds two aggregates: each context is named after its root model
    assert _context_of(library, "desk.TicketReply") == "ticket"
    assert _context_of(library, "desk.RoomKey") == "room"


def test_report_shows_the_cost_breakdown_and_na_for_log_only_metrics(
        library: Analysis) -> None:
    md = (library.options.out / "report.md").read_text()
    assert "## Infrastructure (not a business context)" in md
    assert "n/a (needs a query log)" in md
    assert f"| 1 | {library.plan[0]['context']} | " in md
    assert "| library | 0 | 2 | 1.25 |" in md
    assert "keys out 0 x 2.0" in md


def test_orm_writes_are_read_from_the_syntax_tree() -> None:
    from analysis.python_facts import python_facts

    source = dedent("""
        def f(pk):
            Product.objects.create(name="x")
            Stock.objects.filter(product_id=pk).update(count=0)
            for line in Line.objects.filter(order_id=pk):
                line.delete()
            order = Order.objects.get(pk=pk)
            order.save()
            return Review.objects.filter(product_id=pk).count()
        """)
    unit = next(u for u in python_facts(source, "shop.views").units if u.name == "f")
    assert unit.writes == ("Line", "Order", "Product", "Stock")  # not Review: only read
