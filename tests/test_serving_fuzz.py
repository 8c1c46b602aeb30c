"""Property-based fuzzing of the HTTP service with schemathesis: every operation of the app's
OpenAPI schema, seeded and bounded, must never answer 5xx and must answer what it documents."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra (FastAPI)")
schemathesis = pytest.importorskip("schemathesis", reason="fuzzing the service needs schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serving_helpers import requires_minilm, train_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: threads only contend


def shared_run(tmp_path_factory, method: str):
    """The toy run of ``method``, trained once per test session (the serving test modules
    share it: nothing here writes to the run directory)."""
    run = tmp_path_factory.getbasetemp() / f"serving-{method}" / "run"
    if not (run / "serving.safetensors").exists():
        train_run(run, method)
    return run


NUM_ITEMS = 40  # the toy catalogue's items i1..i40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    requires_minilm()
    from padrec.serving import Recommender
    from padrec.serving.app import create_app

    run = shared_run(tmp_path_factory, "pad")
    # no API key: POST /items is fuzzed like every other operation (random titles are new items)
    return create_app(Recommender.load(run))


def _known(token: object) -> object:
    """A catalogue item id chosen by the token (so the fuzzer's histories resolve)."""
    return f"i{len(token) % NUM_ITEMS + 1}" if isinstance(token, str) else token


def _repaired(path: str, body: dict) -> dict:
    """``body`` with its item references, k and new items made valid where their types allow,
    so that fuzzing reaches the answers (random ids almost never name an item)."""
    body = dict(body)
    if isinstance(body.get("k"), int) and not isinstance(body["k"], bool):
        body["k"] = 1 + body["k"] % NUM_ITEMS
    for key in ("history", "allow", "deny"):
        if isinstance(body.get(key), list):
            body[key] = [_known(t) for t in body[key][:20]]
    if body.get("history") == []:
        body["history"] = ["i1"]
    if isinstance(body.get("histories"), list):
        body["histories"] = [
            [_known(t) for t in h[:20]] or ["i1"] if isinstance(h, list) else h for h in body["histories"][:8]
        ]
    if path == "/items" and isinstance(body.get("items"), list):
        items, ids = [], set()
        for it in body["items"][:4]:
            if isinstance(it, dict):
                it = {k: v for k, v in it.items() if k != "embedding"}  # a random one never has D values
                if not isinstance(it.get("title"), str) or not it["title"].strip():
                    it["title"] = f"Fuzzed Tea No. {len(items)}"
                if isinstance(it.get("id"), str) and it["id"] in ids:
                    it["id"] = f"{it['id']}-{len(items)}"
                if isinstance(it.get("id"), str):
                    ids.add(it["id"])
            items.append(it)
        body["items"] = items
    return body


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=schemathesis.Config(seed=20240601))

    @loaded.hook
    def flatmap_body(context, body):
        # a quarter of the bodies as generated, the rest repaired to reach the service's answers
        if not isinstance(body, dict):
            return st.just(body)
        path = context.operation.path
        return st.integers(0, 3).map(lambda r: _repaired(path, body) if r else body)

    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_documented_answers(case):
    case.call_and_validate(checks=CHECKS)


def test_fuzzing_reached_the_answers(fuzz_app):
    """The repaired bodies make the fuzzer exercise the answers, not only the refusals."""
    text = generate_latest(fuzz_app.state.metrics.registry).decode()
    counts = {}
    for route in ("/recommend", "/recommend/batch", "/items"):
        pattern = rf'padrec_requests_total{{method="POST",route="{re.escape(route)}",status="(\d+)"}} (\S+)'
        counts[route] = {int(code): float(n) for code, n in re.findall(pattern, text)}
    if not any(counts.values()):
        pytest.skip("runs after the fuzz test (in the same module)")
    for route, by_status in counts.items():
        assert by_status.get(200, 0) > 0, (route, by_status)
        assert by_status.get(422, 0) > 0, (route, by_status)
        assert not any(code >= 500 for code in by_status), (route, by_status)
