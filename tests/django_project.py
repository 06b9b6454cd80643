"""The tests' Django URLconf: the docs' ``urls.py``, and more routes for the edge cases."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path, re_path
from django.views import View
from django.views.decorators.http import require_http_methods

from .monitoring_support import app_log
from .recording import readme_example

_docs: dict[str, Any] = {"__name__": __name__}
exec(readme_example("django-urls"), _docs)


@require_http_methods(["PUT"])
def edit(request: HttpRequest, item_id: int) -> HttpResponse:
    return JsonResponse({"edited": item_id})


class Things(View):
    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return JsonResponse({"slug": slug})


def work(request: HttpRequest) -> HttpResponse:
    app_log.info("working")
    app_log.warning("done")
    return JsonResponse({"trace_id": request.META["mnemo_obs.trace_id"]})


def legacy(request: HttpRequest, year: str) -> HttpResponse:
    return JsonResponse({"year": year})


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


urlpatterns = [
    *_docs["urlpatterns"],
    path("items/<int:item_id>/edit", edit),
    path("things/<slug:slug>/", Things.as_view()),
    path("work", work),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", legacy),
    path("v2/", include([path("shop/", include(_docs["api"]))])),
    path("boom", boom),
]
