"""Endpoints of urls modules that build their patterns from several module-level lists:
only ``urlpatterns`` is walked, and a list reaches it through ``include(name)`` or a splice."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

from analysis.pipeline import PASSES, analyze
from analysis.state import Options

UP_TO = PASSES[: [p.__name__ for p in PASSES].index("extract_endpoints") + 1]

VIEWS = """
    def cart(request): ...
    def checkout(request): ...
    def health(request): ...
    def extra(request): ...
    def debug(request): ...
    def inner(request): ...
    def v2_home(request): ...
    class ProductViewSet: ...
    """


def _endpoints(root: Path, tmp: Path, files: dict[str, str]) -> set[str]:
    for name, text in {"shop/__init__.py": "", "shop/views.py": VIEWS, **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
    a = analyze(Options(root=root, out=tmp), passes=UP_TO)
    return {e.template for e in a.endpoints}


def test_a_local_list_is_walked_only_at_the_prefix_it_is_included_with(tmp_path: Path) -> None:
    # given a urls module with a local list mounted under api/, a router spliced into it,
    # a pattern inserted later, and urlpatterns grown by +=, extend, + other_list and in a loop
    urls = """
        from django.urls import include, path
        from rest_framework.routers import SimpleRouter
        from shop import views

        router = SimpleRouter()
        router.register("products", views.ProductViewSet)

        api = [
            path("cart/", views.cart),
            path("checkout/", views.checkout),
            *router.urls,
        ]
        api.insert(0, path("", views.extra))
        v2 = [path("home/", views.v2_home)]
        unused = [path("never/", views.debug)]

        urlpatterns = [
            path("health/", views.health),
            path("api/", include(api)),
            path("ns/", include((v2, "v2"), namespace="v2")),
            path("inline/", include([path("x/", views.inner)])),
        ] + [path("plus/", views.extra)]
        urlpatterns += [path("debug/", views.debug)]
        urlpatterns.extend([path("more/", views.extra)])
        for name in ["loop"]:
            urlpatterns.append(path("loop/", views.extra))
        """
    # when it is analysed
    found = _endpoints(tmp_path / "src", tmp_path / "out",
                       {"shop/urls.py": urls, "shop/settings.py": 'ROOT_URLCONF = "shop.urls"\n'})
    # then each list's patterns appear once, under the prefix it is included with
    assert found == {
        "/health/", "/api/", "/api/cart/", "/api/checkout/", "/api/products/",
        "/api/products/{pk}/", "/ns/home/", "/inline/x/", "/plus/", "/debug/", "/more/",
        "/loop/"}


def test_lists_of_another_module_and_a_module_without_urlpatterns(tmp_path: Path) -> None:
    # given a root that splices an imported list and includes a router imported from a module
    # that has no urlpatterns (it is walked as before: every list nobody includes)
    files = {
        "shop/settings.py": 'ROOT_URLCONF = "shop.urls"\n',
        "shop/api.py": """
            from django.urls import include, path
            from rest_framework.routers import DefaultRouter
            from shop import views

            router = DefaultRouter()
            router.register(r"products", views.ProductViewSet)
            sub = [path("checkout/", views.checkout)]
            api_patterns = [path("cart/", views.cart), path("sub/", include(sub))]
            """,
        "shop/urls.py": """
            from django.urls import include, path
            from shop.api import api_patterns, router

            urlpatterns = [path("r/", include(router.urls))]
            urlpatterns += api_patterns
            """,
    }
    # when it is analysed
    found = _endpoints(tmp_path / "src", tmp_path / "out", files)
    # then the imported list and router land where they are mounted, nowhere else
    assert found == {"/r/products/", "/r/products/{pk}/", "/cart/", "/sub/checkout/"}


def test_a_module_included_as_a_module_object_is_no_root(tmp_path: Path) -> None:
    # given no settings (no ROOT_URLCONF), a urls module including another as a module object
    files = {
        "manage.py": "",
        "shop/api_urls.py": """
            from django.urls import path
            from shop import views

            urlpatterns = [path("cart/", views.cart)]
            """,
        "shop/urls.py": """
            from django.urls import include, path
            from shop import api_urls

            urlpatterns = [path("api/", include(api_urls))]
            """,
    }
    # when it is analysed
    found = _endpoints(tmp_path / "src", tmp_path / "out", files)
    # then the included module is walked under its prefix only, not as a root of its own
    assert found == {"/api/cart/"}
