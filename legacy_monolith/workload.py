"""A deterministic, bounded workload of shoppers and staff against a running shop.

Each of ``concurrency`` workers gets its own ``random.Random(seed + worker)`` and plays
journeys (browse, search, shop = add to cart + checkout + pay, review, staff = ship +
moderate + report, account). The same seed sends the same requests in the same order per
worker; only the interleaving of workers varies. It stops at ``requests`` requests or
``duration`` seconds, whichever comes first, so it is safe to point at any base URL.

With ``visitor_header`` set, every request says who sends it in that header, as a site's
session or user id would: a signed-in journey as its user (``alice``), an anonymous one as
one of ``VISITORS`` visitors per worker (``visitor-0-17``), drawn from a random stream of
its own so the requests themselves stay the same. A proxy's canary that is sticky by that
header then sees stable visitors, some on each side, instead of one client address.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from legacy_monolith.errors import MonolithError

SHOPPERS = (("alice", "alice-password"),) + tuple(
    (f"shopper{i:04d}", "shopper-password") for i in range(1, 5)
)
STAFF = ("staff", "staff-password")
SEARCH_WORDS = ("kettle", "lamp", "pro", "eco", "chair", "camera", "mini", "watch")
JOURNEYS: tuple[tuple[str, int], ...] = (
    ("browse", 40), ("search", 15), ("shop", 20), ("review", 8), ("staff", 10), ("account", 7),
)
VISITORS = 100  # anonymous visitors per worker, with --visitor-header
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (RFC 9110)


class WorkloadError(MonolithError):
    """The workload cannot run (bad arguments, unreachable shop)."""


@dataclass(frozen=True)
class WorkloadSpec:
    """What to send, and the bounds."""

    base_url: str
    requests: int = 200
    duration: float = 60.0
    seed: int = 42
    concurrency: int = 2
    timeout: float = 10.0
    visitor_header: str | None = None

    def validate(self) -> None:
        """Raise WorkloadError naming the first bad field."""
        if not self.base_url.startswith(("http://", "https://")):
            raise WorkloadError(f"--base-url {self.base_url!r} must start with http:// or https://")
        if self.requests < 1:
            raise WorkloadError(f"--requests must be at least 1 (got {self.requests})")
        if self.duration <= 0:
            raise WorkloadError(f"--duration must be more than 0 seconds (got {self.duration})")
        if not 1 <= self.concurrency <= 64:
            raise WorkloadError(f"--concurrency must be between 1 and 64 (got {self.concurrency})")
        if self.visitor_header is not None and not HEADER_NAME.match(self.visitor_header):
            raise WorkloadError(f"--visitor-header {self.visitor_header!r} is not an HTTP "
                                "header name; use e.g. --visitor-header X-User-Id")


@dataclass(frozen=True)
class Sample:
    kind: str
    status: int
    ms: float


@dataclass
class WorkloadResult:
    """Every request's kind, status and latency, and the wall time."""

    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Counts by kind and status, req/s and latency percentiles (JSON-ready)."""
        latencies = sorted(s.ms for s in self.samples)
        return {
            "requests": len(self.samples),
            "seconds": round(self.seconds, 3),
            "rps": round(len(self.samples) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(_percentile(latencies, 50), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "by_kind": dict(sorted(Counter(s.kind for s in self.samples).items())),
            "by_status": {str(k): v for k, v in sorted(
                Counter(s.status for s in self.samples).items())},
            "errors_5xx": sum(1 for s in self.samples if s.status >= 500),
        }


def _percentile(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


class Budget:
    """The shared request/time budget of all workers."""

    def __init__(self, requests: int, duration: float) -> None:
        self._left = requests
        self._deadline = time.monotonic() + duration
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.monotonic() >= self._deadline:
                return False
            self._left -= 1
            return True


class OutOfBudget(Exception):
    """Raised inside a journey when the budget is spent."""


class Actor:
    """One worker: an HTTP client, a random stream and a results list."""

    def __init__(self, spec: WorkloadSpec, worker: int, budget: Budget,
                 product_ids: list[int], transport: httpx.BaseTransport | None = None) -> None:
        self.rng = random.Random(spec.seed * 1000 + worker)
        self.client = httpx.Client(base_url=spec.base_url, timeout=spec.timeout,
                                   transport=transport)
        self.budget = budget
        self.product_ids = product_ids
        self.samples: list[Sample] = []
        self.tokens: dict[str, str] = {}
        self.worker = worker
        self.visitor_header = spec.visitor_header
        # a stream of its own: drawing visitors must not change the requests of a seed
        self.visitor_rng = random.Random(f"visitors-{spec.seed}-{worker}")
        self.visitor = ""

    def new_visitor(self) -> None:
        """The next journey is an anonymous visitor's, one of ``VISITORS`` per worker."""
        self.visitor = f"visitor-{self.worker}-{self.visitor_rng.randrange(VISITORS)}"

    def call(self, kind: str, method: str, url: str, user: str | None = None,
             **kwargs: Any) -> httpx.Response:
        if not self.budget.take():
            raise OutOfBudget
        headers = {"X-Request-ID": f"wl-{self.worker}-{len(self.samples)}"}
        if self.visitor_header:
            headers[self.visitor_header] = user or self.visitor
        if user is not None:
            headers["Authorization"] = f"Token {self.token(user)}"
        start = time.perf_counter()
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.samples.append(Sample(kind, response.status_code,
                                   (time.perf_counter() - start) * 1000))
        return response

    def token(self, username: str) -> str:
        if username not in self.tokens:
            password = dict((*SHOPPERS, STAFF))[username]
            response = self.call("auth-token", "POST", "/api/auth/token/",
                                 json={"username": username, "password": password})
            self.tokens[username] = response.json().get("token", "") if response.is_success \
                else ""
        return self.tokens[username]

    def product(self) -> int:
        return self.rng.choice(self.product_ids)


def browse(a: Actor) -> None:
    a.call("product-list", "GET", f"/api/products/?page={a.rng.randint(1, 5)}")
    pid = a.product()
    a.call("product-detail", "GET", f"/api/products/{pid}/")
    a.call("category-list", "GET", "/api/categories/")
    if a.rng.random() < 0.5:
        a.call("product-reviews", "GET", f"/api/products/{pid}/reviews/")
    if a.rng.random() < 0.3:
        a.call("product-stock", "GET", f"/api/products/{pid}/stock/")


def search(a: Actor) -> None:
    word = a.rng.choice(SEARCH_WORDS)
    a.call("product-search", "GET", f"/api/products/?search={word}&ordering=price")
    a.call("brand-list", "GET", "/api/brands/")


def shop(a: Actor) -> None:
    user = a.rng.choice(SHOPPERS)[0]
    for _ in range(a.rng.randint(1, 2)):
        a.call("cart-add", "POST", "/api/cart/items/", user,
               json={"product": a.product(), "quantity": a.rng.randint(1, 2)})
    a.call("cart", "GET", "/api/cart/", user)
    addresses = a.call("address-list", "GET", "/api/addresses/", user)
    results = addresses.json().get("results", []) if addresses.is_success else []
    if not results:
        return
    order = a.call("checkout", "POST", "/api/checkout/", user,
                   json={"shipping_address": results[0]["id"]})
    if order.status_code == 201:
        a.call("order-pay", "POST", f"/api/orders/{order.json()['id']}/pay/", user,
               json={"method": "card"})
    else:
        a.call("cart-clear", "DELETE", "/api/cart/", user)


def review(a: Actor) -> None:
    user = a.rng.choice(SHOPPERS)[0]
    a.call("review-create", "POST", "/api/reviews/", user, json={
        "product": a.product(), "rating": a.rng.randint(1, 5), "title": "Workload review",
        "body": "Written by the workload generator."})


def staff(a: Actor) -> None:
    user = STAFF[0]
    paid = a.call("order-list", "GET", "/api/orders/?status=paid&page_size=5", user)
    for order in (paid.json().get("results", []) if paid.is_success else [])[:1]:
        a.call("order-ship", "POST", f"/api/orders/{order['id']}/ship/", user,
               json={"carrier": a.rng.choice(("dhl", "ups", "postnl"))})
    pending = a.call("review-list", "GET", "/api/reviews/?status=pending&page_size=5", user)
    for item in (pending.json().get("results", []) if pending.is_success else [])[:1]:
        a.call("review-moderate", "POST", f"/api/reviews/{item['id']}/moderate/", user,
               json={"decision": a.rng.choice(("approve", "approve", "reject"))})
    if a.rng.random() < 0.3:
        a.call("report-sales", "GET", "/api/reports/sales/?group_by=" +
               a.rng.choice(("category", "brand", "warehouse", "carrier")), user)


def account(a: Actor) -> None:
    user = a.rng.choice(SHOPPERS)[0]
    a.call("me", "GET", "/api/me/", user)
    a.call("loyalty", "GET", "/api/loyalty/", user)
    a.call("messages", "GET", "/api/notifications/messages/", user)
    a.call("order-list", "GET", "/api/orders/", user)


PLAYS: dict[str, Callable[[Actor], None]] = {
    "browse": browse, "search": search, "shop": shop, "review": review, "staff": staff,
    "account": account,
}


def _play(actor: Actor) -> None:
    names = [n for n, _ in JOURNEYS]
    weights = [w for _, w in JOURNEYS]
    try:
        while True:
            actor.new_visitor()
            PLAYS[actor.rng.choices(names, weights)[0]](actor)
    except OutOfBudget:
        return
    except httpx.HTTPError as exc:
        actor.samples.append(Sample(f"transport-error:{type(exc).__name__}", 0, 0.0))


def discover_products(spec: WorkloadSpec,
                      transport: httpx.BaseTransport | None = None) -> list[int]:
    """Ids of active, in-stock products (one request, not counted in the budget)."""
    try:
        with httpx.Client(base_url=spec.base_url, timeout=spec.timeout,
                          transport=transport) as client:
            response = client.get("/api/products/?is_active=true&page_size=100")
    except httpx.HTTPError as exc:
        raise WorkloadError(
            f"cannot reach the shop at {spec.base_url} ({exc}); start it with "
            "`strangler monolith serve` or fix --base-url"
        ) from exc
    if response.status_code != 200:
        raise WorkloadError(f"GET {spec.base_url}/api/products/ answered "
                            f"{response.status_code}; is this the demo shop?")
    ids = [p["id"] for p in response.json().get("results", []) if p.get("in_stock")]
    if not ids:
        raise WorkloadError("the shop has no products in stock; run `strangler monolith seed`")
    return sorted(ids)


def run_workload(spec: WorkloadSpec,
                 transport: httpx.BaseTransport | None = None) -> WorkloadResult:
    """Run the workload to its bounds and return every sample."""
    spec.validate()
    products = discover_products(spec, transport)
    budget = Budget(spec.requests, spec.duration)
    actors = [Actor(spec, w, budget, products, transport) for w in range(spec.concurrency)]
    start = time.perf_counter()
    threads = [threading.Thread(target=_play, args=(a,), daemon=True) for a in actors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(spec.duration + spec.timeout + 5)
    result = WorkloadResult(seconds=time.perf_counter() - start)
    for actor in actors:
        actor.client.close()
        result.samples.extend(actor.samples)
    return result


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a plain table for people."""
    lines = [f"{'kind':<20} {'requests':>8}"]
    lines += [f"{kind:<20} {n:>8}" for kind, n in summary["by_kind"].items()]
    lines.append("")
    lines.append("status  " + "  ".join(f"{k}: {v}" for k, v in summary["by_status"].items()))
    lines.append(
        f"{summary['requests']} requests in {summary['seconds']} s = {summary['rps']} req/s; "
        f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms"
    )
    return "\n".join(lines)
