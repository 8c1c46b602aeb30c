"""The HTTP recommendation service: a FastAPI app over a :class:`Recommender`.

Routes: ``POST /recommend``, ``POST /recommend/batch``, ``POST /items`` (key-protected when
the app has an API key), ``GET /items`` (title search), ``GET /items/{id}``, ``GET /health``,
``GET /metrics`` (Prometheus text), ``GET /`` (a small web page), ``/docs`` and
``/openapi.json``. Bad input is a 4xx whose ``error`` names the field; nothing a client
sends makes a 5xx.
"""

from __future__ import annotations

import secrets
import time
from importlib import resources
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from padrec.methods.base import NewItemsUnsupported
from padrec.serving.catalog import UnknownItem
from padrec.serving.new_items import NewItem, NewItemError
from padrec.serving.recommender import Recommendation, Recommender
from padrec.serving.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    ItemOut,
    ItemsRequest,
    ItemsResponse,
    Options,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    SearchResponse,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 422)}


class ClientError(Exception):
    """A request the service refuses: HTTP ``status`` with ``message`` naming the field."""

    def __init__(self, status: int, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fields = status, message, fields or []


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


class Metrics:
    """Prometheus metrics of one app (its own registry)."""

    def __init__(self, recommender: Recommender) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "padrec_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "padrec_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.items = Gauge("padrec_catalogue_items", "items in the served catalogue", registry=self.registry)
        self.added = Gauge("padrec_added_items", "items added through POST /items", registry=self.registry)
        self.items.set_function(lambda: recommender.num_items)
        self.added.set_function(lambda: len(recommender.catalog.added) if recommender.catalog else 0)


def create_app(
    recommender: Recommender,
    api_key: str | None = None,
    max_body_bytes: int = 2_000_000,
) -> FastAPI:
    """The service for ``recommender``.

    Args:
        api_key: when given, ``POST /items`` needs header ``X-API-Key`` with this value.
        max_body_bytes: larger request bodies get 413 before they are read whole.
    """
    if recommender.catalog is None:
        raise ValueError("the run's serving file has no item ids and titles (retrain with this padrec version)")
    rec = recommender
    catalog = recommender.catalog
    app = FastAPI(
        title="padrec recommendation service",
        version="1",
        description=(
            f"Method `{rec.meta.get('method')}` over {rec.num_items} items. Histories are item ids "
            "(or exact titles), oldest first."
        ),
    )
    metrics = Metrics(rec)
    app.state.recommender, app.state.metrics = rec, metrics

    def key_ok(header: str | None) -> bool:
        """No key configured, or the header holds it (compared as bytes in constant time:
        compare_digest refuses str with non-ASCII characters, and a header may hold any)."""
        if api_key is None:
            return True
        return header is not None and secrets.compare_digest(header.encode("utf-8"), api_key.encode("utf-8"))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        t0 = time.perf_counter()
        path = request.url.path
        route = path if path in ROUTES else ("/items/{id}" if path.startswith("/items/") else "other")
        size = request.headers.get("content-length")
        if request.method == "POST" and path == "/items" and not key_ok(request.headers.get("x-api-key")):
            # before the body is read or validated: a caller without the key learns nothing more
            response: Response = _error(401, "missing or wrong X-API-Key header", ["X-API-Key"])
        elif size is not None and (not size.isdigit() or int(size) > max_body_bytes):
            response = _error(413, f"request body larger than {max_body_bytes} bytes", ["body"])
        elif request.method == "POST" and size is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body_bytes:
                    response = _error(413, f"request body larger than {max_body_bytes} bytes", ["body"])
                    break
            else:
                request._body = body
                response = await call_next(request)
        else:
            response = await call_next(request)
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - t0)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        # a body that is no JSON at all is located at a character offset: name the body
        fields = ["body" if e.get("type") == "json_invalid" else _loc(tuple(e.get("loc", ()))) for e in errs]
        shown = "; ".join(f"{f}: {e.get('msg', 'invalid')}" for f, e in zip(fields[:5], errs[:5]))
        more = f" (and {len(errs) - 5} more)" if len(errs) > 5 else ""
        return _error(422, shown + more, fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # the framework's own refusals (unknown route, wrong method, undecodable body) in the
        # service's error format
        if exc.status_code == 400:  # FastAPI: the body could not be decoded (e.g. not UTF-8)
            return _error(422, f"body: not valid JSON ({exc.detail})", ["body"])
        if exc.status_code == 404:
            message, fields = f"path: no route {request.url.path[:200]}", ["path"]
        elif exc.status_code == 405:
            message, fields = f"method: {request.method} is not allowed on {request.url.path[:200]}", ["method"]
        else:
            message, fields = str(exc.detail), []
        response = _error(exc.status_code, message, fields)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(ClientError)
    async def refused(request: Request, exc: ClientError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.fields)

    def resolve(tokens: list[str], where: str) -> list[int]:
        try:
            return [catalog.resolve(t, f"{where}[{i}]") for i, t in enumerate(tokens)]
        except UnknownItem as exc:
            raise ClientError(422, str(exc), [str(exc).split(":")[0]]) from None

    def options(body: Options, histories: list[list[int]]) -> dict[str, Any]:
        if body.k > rec.num_items:
            raise ClientError(422, f"k: at most the catalogue size {rec.num_items}, got {body.k}", ["k"])
        return {
            "k": body.k,
            "exclude_history": body.exclude_history,
            "allow": resolve(body.allow, "allow") if body.allow is not None else None,
            "deny": resolve(body.deny, "deny") if body.deny else None,
            "explain": body.explain,
        }

    def answer(r: Recommendation, history: list[int]) -> RecommendResponse:
        items = []
        for j, (i, s) in enumerate(zip(r.items, r.scores)):
            parts = {name: float(v[j]) for name, v in r.parts.items()} if r.parts is not None else None
            d = catalog.describe(i)
            items.append(ScoredItem(id=str(d["id"]), title=str(d["title"]), score=s, new=bool(d["new"]), parts=parts))
        return RecommendResponse(items=items, latency_ms=r.latency_ms, history=[catalog.item_ids[i] for i in history])

    @app.post("/recommend", response_model=RecommendResponse, responses=ERRORS, summary="top-k for one history")
    def recommend(body: RecommendRequest) -> RecommendResponse:
        hist = resolve(body.history, "history")
        r = rec.recommend(hist, **options(body, [hist]))
        return answer(r, hist)

    @app.post("/recommend/batch", response_model=BatchResponse, responses=ERRORS, summary="top-k for many histories")
    def recommend_batch(body: BatchRequest) -> BatchResponse:
        hists = []
        for b, h in enumerate(body.histories):
            if not h:
                raise ClientError(422, f"histories[{b}]: empty history", [f"histories[{b}]"])
            if len(h) > 1000:
                raise ClientError(422, f"histories[{b}]: more than 1000 items", [f"histories[{b}]"])
            hists.append(resolve(h, f"histories[{b}]"))
        out = rec.recommend_batch(hists, **options(body, hists))
        return BatchResponse(results=[answer(r, h) for r, h in zip(out, hists)], latency_ms=out[0].latency_ms)

    @app.post("/items", response_model=ItemsResponse, responses=ERRORS, summary="add or update items from text")
    def add_items(body: ItemsRequest, x_api_key: str | None = Header(None)) -> ItemsResponse:
        if not key_ok(x_api_key):
            raise ClientError(401, "missing or wrong X-API-Key header", ["X-API-Key"])
        why = rec.new_items_unsupported()
        if why is not None:
            raise ClientError(409, why)
        t0 = time.perf_counter()
        items = [NewItem(it.id, it.title, dict(it.fields), it.embedding) for it in body.items]
        try:
            done = rec.add_items(items)
        except NewItemError as exc:
            raise ClientError(422, f"items: {exc}", ["items"]) from None
        except NewItemsUnsupported as exc:
            raise ClientError(409, str(exc)) from None
        out = [
            ItemOut(id=catalog.item_ids[i], title=catalog.titles[i], new=i in catalog.added, created=c) for i, c in done
        ]
        return ItemsResponse(items=out, num_items=rec.num_items, seconds=time.perf_counter() - t0)

    @app.get("/items", response_model=SearchResponse, responses=ERRORS, summary="search items by title")
    def search(
        q: str = Query(..., min_length=1, max_length=200), limit: int = Query(20, ge=1, le=200)
    ) -> SearchResponse:
        hits = catalog.search(q, limit)
        return SearchResponse(items=[ItemOut(**catalog.describe(i)) for i in hits])  # type: ignore[arg-type]

    @app.get("/items/{item_id}", response_model=ItemOut, responses=ERRORS, summary="one item")
    def get_item(item_id: str) -> ItemOut:
        i = catalog.lookup(item_id)
        if i is None:
            raise ClientError(404, f"item_id: '{item_id[:80]}' is not in the catalogue", ["item_id"])
        return ItemOut(**catalog.describe(i))  # type: ignore[arg-type]

    @app.get("/health", summary="liveness and what is served")
    def health() -> dict[str, Any]:
        return {"status": "ok", **rec.describe()}

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        summary="Prometheus metrics",
    )
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(resources.files("padrec.serving").joinpath("static/index.html").read_text("utf-8"))

    return app


ROUTES = {"/recommend", "/recommend/batch", "/items", "/health", "/metrics", "/"}


def _error(status: int, message: str, fields: list[str]) -> JSONResponse:
    return JSONResponse({"error": message, "fields": fields}, status_code=status)
