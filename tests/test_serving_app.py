"""The HTTP service end to end (FastAPI TestClient over real trained runs): every route, new
items from text, bad input (always a 4xx naming the field), concurrent writes and reads, run
directories that fail verification, the ANN path and ``padrec serve``."""

from __future__ import annotations

import json
import math
import re
import shutil
import threading
from collections import Counter

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra (FastAPI)")

from fastapi.testclient import TestClient  # noqa: E402
from serving_helpers import requires_minilm, train_run  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from padrec.cli import app as cli_app  # noqa: E402
from padrec.serving import Recommender  # noqa: E402
from padrec.serving.ann import AnnConfig  # noqa: E402
from padrec.serving.app import create_app  # noqa: E402
from padrec.serving.new_items import NewItem  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: threads only contend
KEY = "s3cret-key"
N = 40  # items of the toy catalogue: i1..i40, titles "<Kind> No. <i>"
TEA = ["i1", "i9", "i17", "i25"]  # "Green Tea No. 1/9/17/25"


def shared_run(tmp_path_factory, method: str):
    """The toy run of ``method``, trained once per test session (the serving test modules
    share it: no test writes to it; the ones that damage a run damage a copy)."""
    run = tmp_path_factory.getbasetemp() / f"serving-{method}" / "run"
    if not (run / "serving.safetensors").exists():
        train_run(run, method)
    return run


@pytest.fixture(scope="module")
def pad_run(tmp_path_factory):
    requires_minilm()
    return shared_run(tmp_path_factory, "pad")


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    return shared_run(tmp_path_factory, "sequential")


@pytest.fixture(scope="module")
def encoder(pad_run):
    """One MiniLM encoder for every recommender of the PAD run (loading it is the slow part)."""
    return Recommender.load(pad_run).text_encoder


@pytest.fixture
def load(pad_run, encoder):
    """A fresh recommender over the PAD run (its own tables: tests may add items to it)."""

    def make(**kwargs) -> Recommender:
        rec = Recommender.load(pad_run, **kwargs)
        rec.text_encoder = encoder
        return rec

    return make


@pytest.fixture(scope="module")
def rec(pad_run, encoder):
    """The read-only recommender (no test adds items to it)."""
    r = Recommender.load(pad_run)
    r.text_encoder = encoder
    return r


@pytest.fixture(scope="module")
def client(rec):
    return TestClient(create_app(rec, api_key=KEY), raise_server_exceptions=False)


def recommend(client, **body):
    r = client.post("/recommend", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def ids_of(answer) -> list[str]:
    return [it["id"] for it in answer["items"]]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if m is None or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if got == labels:
            return float(m.group(3))
    return 0.0


def assert_error(response, status: int, field: str) -> dict:
    """A JSON error of ``status`` whose message and ``fields`` name ``field``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "fields"}, body
    assert field in body["fields"], body
    assert field in body["error"], body
    return body


# --- 1. every route ----------------------------------------------------------------------
def test_recommend_returns_k_titled_items_sorted_with_expert_parts(client, rec):
    out = recommend(client, history=["i1", "i2", "i3"], k=5)
    assert len(out["items"]) == 5
    assert out["history"] == ["i1", "i2", "i3"]
    scores = [it["score"] for it in out["items"]]
    assert scores == sorted(scores, reverse=True)
    for it in out["items"]:
        i = rec.catalog.lookup(it["id"])
        assert i is not None and it["title"] == rec.catalog.titles[i] and it["title"].endswith(f"No. {i}")
        assert it["new"] is False
        assert set(it["parts"]) == {"id", "align", "llm"}
        assert sum(it["parts"].values()) == pytest.approx(it["score"], rel=1e-4, abs=1e-4)
    assert not {"i1", "i2", "i3"} & set(ids_of(out))  # PAD's protocol drops the history
    # the same answer as the recommender itself
    direct = rec.recommend([1, 2, 3], k=5)
    assert [rec.catalog.item_ids[i] for i in direct.items] == ids_of(out)
    assert direct.scores == pytest.approx(scores, abs=1e-5)


def test_history_is_excluded_by_default_and_included_on_request(client):
    out = recommend(client, history=["i1"], k=N)
    assert len(out["items"]) == N - 1 and "i1" not in ids_of(out)
    out = recommend(client, history=["i1"], k=N, exclude_history=False)
    assert len(out["items"]) == N and "i1" in ids_of(out)
    assert sorted(ids_of(out)) == sorted(f"i{i}" for i in range(1, N + 1))


def test_allow_and_deny_lists(client):
    allow = ["i5", "i6", "i7", "Rice No. 14"]
    out = recommend(client, history=["i1", "i2"], k=10, allow=allow)
    assert sorted(ids_of(out)) == ["i14", "i5", "i6", "i7"]
    full = recommend(client, history=["i1", "i2"], k=N)
    assert ids_of(out) == [i for i in ids_of(full) if i in {"i5", "i6", "i7", "i14"}]
    deny = ids_of(full)[:3]
    out = recommend(client, history=["i1", "i2"], k=10, deny=deny)
    assert len(out["items"]) == 10 and not set(deny) & set(ids_of(out))
    assert ids_of(out) == ids_of(full)[3:13]
    # allow and deny together; the history stays excluded from an allow list
    out = recommend(client, history=["i1", "i2"], k=10, allow=["i1", "i5", "i6"], deny=["i6"])
    assert ids_of(out) == ["i5"]
    assert recommend(client, history=["i1"], allow=[])["items"] == []


def test_history_by_exact_title(client):
    by_title = recommend(client, history=["Green Tea No. 1", "coffee beans no. 2"], k=5)
    by_id = recommend(client, history=["i1", "i2"], k=5)
    assert by_title["history"] == ["i1", "i2"]
    assert ids_of(by_title) == ids_of(by_id)
    assert [it["score"] for it in by_title["items"]] == pytest.approx([it["score"] for it in by_id["items"]])


def test_batch_equals_single_calls(client):
    histories = [["i1", "i2", "i3"], ["i10"], TEA, ["Pasta No. 3", "i4", "i4", "i5"]]
    r = client.post("/recommend/batch", json={"histories": histories, "k": 7, "deny": ["i20"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(histories)
    for h, got in zip(histories, results):
        one = recommend(client, history=h, k=7, deny=["i20"])
        assert ids_of(got) == ids_of(one) and got["history"] == one["history"]
        for a, b in zip(got["items"], one["items"]):
            assert a["score"] == pytest.approx(b["score"], abs=1e-5)
            assert a["parts"] == pytest.approx(b["parts"], abs=1e-5)


def test_item_lookup_and_title_search(client):
    r = client.get("/items/i3")
    assert r.status_code == 200 and r.json() == {"id": "i3", "title": "Pasta No. 3", "new": False, "created": None}
    assert_error(client.get("/items/nope"), 404, "item_id")
    hits = client.get("/items", params={"q": "green tea", "limit": 3}).json()["items"]
    assert [h["id"] for h in hits] == ["i1", "i9", "i17"]
    hits = client.get("/items", params={"q": "TEA NO. 2"}).json()["items"]
    assert [h["title"] for h in hits] == ["Green Tea No. 25"]
    # titles starting with the query come first
    hits = client.get("/items", params={"q": "rice", "limit": 200}).json()["items"]
    assert len(hits) == 5 and all(h["title"].startswith("Rice No.") for h in hits)
    assert client.get("/items", params={"q": "no such thing"}).json() == {"items": []}


def test_health(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["method"] == "pad"
    assert h["num_items"] == N and h["added_items"] == 0 and h["max_len"] == 10
    assert h["parts"] == ["id", "align", "llm"] and h["top_k"] == "exact"
    assert h["exclude_history"] is True and h["new_items"] == "supported"
    assert h["text"]["encodes_text"] is True and h["text"]["dim"] == 384


def test_metrics_count_requests_latency_and_catalogue(rec):
    client = TestClient(create_app(rec))
    before = client.get("/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    text = before.text
    assert "# TYPE padrec_requests_total counter" in text
    assert "# TYPE padrec_request_seconds histogram" in text
    assert metric(text, "padrec_catalogue_items") == N
    ok = metric(text, "padrec_requests_total", method="POST", route="/recommend", status="200")
    bad = metric(text, "padrec_requests_total", method="POST", route="/recommend", status="422")
    count = metric(text, "padrec_request_seconds_count", route="/recommend")
    for _ in range(3):
        recommend(client, history=["i1"], k=3)
    client.post("/recommend", json={"history": ["nope"]})
    text = client.get("/metrics").text
    assert metric(text, "padrec_requests_total", method="POST", route="/recommend", status="200") == ok + 3
    assert metric(text, "padrec_requests_total", method="POST", route="/recommend", status="422") == bad + 1
    assert metric(text, "padrec_request_seconds_count", route="/recommend") == count + 4
    assert metric(text, "padrec_request_seconds_bucket", route="/recommend", le="+Inf") == count + 4
    assert metric(text, "padrec_request_seconds_sum", route="/recommend") > 0
    assert metric(text, "padrec_requests_total", method="GET", route="/metrics", status="200") >= 1


def test_page_docs_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<" in page.text
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/recommend", "/recommend/batch", "/items", "/items/{item_id}", "/health", "/metrics"} <= set(paths)
    assert {"get", "post"} <= set(paths["/items"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --- 2. new items ------------------------------------------------------------------------
def test_new_item_from_title_is_findable_and_ranked(load):
    rec = load()
    client = TestClient(create_app(rec, api_key=KEY), raise_server_exceptions=False)
    r = client.post(
        "/items", json={"items": [{"id": "tea-99", "title": "Green Tea No. 99"}]}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["num_items"] == N + 1
    assert body["items"] == [{"id": "tea-99", "title": "Green Tea No. 99", "new": True, "created": True}]
    assert client.get("/items/tea-99").json()["new"] is True
    assert [h["id"] for h in client.get("/items", params={"q": "no. 99"}).json()["items"]] == ["tea-99"]
    out = recommend(client, history=TEA, k=N + 1, exclude_history=False)
    assert len(out["items"]) == N + 1
    new = [it for it in out["items"] if it["id"] == "tea-99"]
    assert len(new) == 1 and new[0]["new"] is True and new[0]["title"] == "Green Tea No. 99"
    assert math.isfinite(new[0]["score"]) and all(math.isfinite(v) for v in new[0]["parts"].values())
    assert sum(new[0]["parts"].values()) == pytest.approx(new[0]["score"], rel=1e-4, abs=1e-4)
    # a history may hold it (by id or title)
    assert recommend(client, history=["Green Tea No. 99"], k=3)["history"] == ["tea-99"]
    h = client.get("/health").json()
    assert h["num_items"] == N + 1 and h["added_items"] == 1
    text = client.get("/metrics").text
    assert metric(text, "padrec_catalogue_items") == N + 1
    assert metric(text, "padrec_added_items") == 1


def test_update_existing_item_title(load):
    rec = load()
    client = TestClient(create_app(rec, api_key=KEY))
    before = recommend(client, history=["i1", "i2"], k=N, exclude_history=False)
    r = client.post(
        "/items", json={"items": [{"id": "i3", "title": "Pasta No. 3 Wholegrain"}]}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [{"id": "i3", "title": "Pasta No. 3 Wholegrain", "new": False, "created": False}]
    assert r.json()["num_items"] == N
    assert client.get("/items/i3").json()["title"] == "Pasta No. 3 Wholegrain"
    assert recommend(client, history=["pasta no. 3 wholegrain"], k=2)["history"] == ["i3"]
    assert_error(client.post("/recommend", json={"history": ["Pasta No. 3"]}), 422, "history[0]")
    after = recommend(client, history=["i1", "i2"], k=N, exclude_history=False)
    assert sorted(ids_of(after)) == sorted(ids_of(before))  # same catalogue, i3 re-placed
    assert client.get("/health").json()["added_items"] == 0


def test_new_item_embeddings_are_checked(load):
    rec = load()
    client = TestClient(create_app(rec), raise_server_exceptions=False)
    body = assert_error(client.post("/items", json={"items": [{"id": "bad-1", "embedding": [0.1] * 5}]}), 422, "items")
    assert "'bad-1'" in body["error"] and "384" in body["error"]
    # NaN (Python's JSON reads it) and values that overflow the model are refused too
    raw = '{"items": [{"id": "bad-2", "embedding": [NaN' + ", 0.0" * 383 + "]}]}"
    body = assert_error(client.post("/items", content=raw, headers={"content-type": "application/json"}), 422, "items")
    assert "'bad-2'" in body["error"]
    body = assert_error(
        client.post("/items", json={"items": [{"id": "bad-3", "embedding": [3e38] * 384}]}), 422, "items"
    )
    assert "'bad-3'" in body["error"]
    # nothing was added
    assert client.get("/health").json()["num_items"] == N
    assert client.get("/items/bad-1").status_code == 404
    # a good one is used as it is (no encoder needed)
    emb = rec.text_encoder.encode([NewItem("x", "Olive Oil No. 77")])[0].tolist()
    r = client.post("/items", json={"items": [{"id": "oil-77", "title": "Olive Oil No. 77", "embedding": emb}]})
    assert r.status_code == 200 and r.json()["num_items"] == N + 1
    # an item whose scores overflow never displaces the others from an answer
    r = client.post("/items", json={"items": [{"id": "huge", "embedding": [1e30] * 384}]})
    assert r.status_code in (200, 422), r.text
    out = recommend(client, history=["i1"], k=5, explain=False)
    assert len(out["items"]) == 5 and "huge" not in ids_of(out)


def test_api_key_guards_writes_only(load):
    rec = load()
    client = TestClient(create_app(rec, api_key=KEY), raise_server_exceptions=False)
    body = {"items": [{"id": "k-1", "title": "Oat Milk No. 101"}]}
    assert_error(client.post("/items", json=body), 401, "X-API-Key")
    assert_error(client.post("/items", json=body, headers={"X-API-Key": "wrong"}), 401, "X-API-Key")
    # a header that is not ASCII is a wrong key, not a server error
    assert_error(client.post("/items", json=body, headers={"X-API-Key": "cl\xe9".encode("latin-1")}), 401, "X-API-Key")
    # the key is checked before the body: no schema details for a caller without it
    assert_error(
        client.post("/items", content=b"{not json", headers={"content-type": "application/json"}), 401, "X-API-Key"
    )
    assert_error(client.post("/items", json={"items": "x"}), 401, "X-API-Key")
    assert client.get("/health").json()["num_items"] == N
    r = client.post("/items", json=body, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["items"][0]["created"] is True
    # reads never need the key
    assert client.get("/items/k-1").status_code == 200
    assert client.get("/items", params={"q": "oat"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200
    assert client.post("/recommend", json={"history": ["i1"]}).status_code == 200
    assert client.post("/recommend/batch", json={"histories": [["i1"]]}).status_code == 200


def test_id_only_run_refuses_new_items(seq_run):
    rec = Recommender.load(seq_run)
    client = TestClient(create_app(rec), raise_server_exceptions=False)
    r = client.post("/items", json={"items": [{"id": "n1", "title": "Green Tea No. 99"}]})
    assert r.status_code == 409, r.text
    assert "cannot rank items it was not trained on" in r.json()["error"]
    assert "cannot rank items it was not trained on" in client.get("/health").json()["new_items"]
    assert client.get("/health").json()["num_items"] == N
    out = recommend(client, history=["i1", "i2"], k=4)
    assert len(out["items"]) == 4
    for it in out["items"]:
        assert set(it["parts"]) == {"score"} and it["parts"]["score"] == pytest.approx(it["score"], abs=1e-4)


# --- 3. bad input: a 4xx naming the field, never a 5xx ------------------------------------
H1 = ["i1"]
BAD_RECOMMEND = [
    ({"history": ["nope"]}, "history[0]"),
    ({"history": ["i1", "i2", "Green Tea No. 1000"]}, "history[2]"),
    ({"history": []}, "history"),
    ({"history": ["i1"] * 1001}, "history"),
    ({"k": 3}, "history"),
    ({"history": "i1"}, "history"),
    ({"history": [1, 2]}, "history[0]"),
    ({"history": H1, "k": 0}, "k"),
    ({"history": H1, "k": -5}, "k"),
    ({"history": H1, "k": 1001}, "k"),
    ({"history": H1, "k": N + 1}, "k"),
    ({"history": H1, "k": "3"}, "k"),
    ({"history": H1, "k": 3.5}, "k"),
    ({"history": H1, "k": True}, "k"),
    ({"history": H1, "k": None}, "k"),
    ({"history": H1, "foo": 1}, "foo"),
    ({"history": H1, "allow": [1, 2]}, "allow[0]"),
    ({"history": H1, "allow": "i5"}, "allow"),
    ({"history": H1, "allow": ["i5", "nope"]}, "allow[1]"),
    ({"history": H1, "deny": "i5"}, "deny"),
    ({"history": H1, "deny": [None]}, "deny[0]"),
    ({"history": H1, "deny": ["nope"]}, "deny[0]"),
    ({"history": H1, "exclude_history": "yes"}, "exclude_history"),
    ({"history": H1, "explain": 1}, "explain"),
]


@pytest.mark.parametrize(("body", "field"), BAD_RECOMMEND, ids=[f for _, f in BAD_RECOMMEND])
def test_bad_recommend_requests_name_the_field(client, body, field):
    assert_error(client.post("/recommend", json=body), 422, field)


BAD_BATCH = [
    ({"histories": []}, "histories"),
    ({"histories": [["i1"], []]}, "histories[1]"),
    ({"histories": [["i1"], ["i2", "zz"]]}, "histories[1][1]"),
    ({"histories": [["i1"] * 1001]}, "histories[0]"),
    ({"histories": [["i1"]] * 257}, "histories"),
    ({"histories": ["i1"]}, "histories[0]"),
    ({"histories": [["i1"]], "k": N + 1}, "k"),
    ({"histories": [["i1"]], "history": ["i1"]}, "history"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BATCH, ids=[f for _, f in BAD_BATCH])
def test_bad_batch_requests_name_the_field(client, body, field):
    assert_error(client.post("/recommend/batch", json=body), 422, field)


BAD_ITEMS = [
    ({"items": []}, "items"),
    ({"items": [{"title": "x"}]}, "items[0].id"),
    ({"items": [{"id": " padded "}]}, "items[0].id"),
    ({"items": [{"id": ""}]}, "items[0].id"),
    ({"items": [{"id": "a", "title": 5}]}, "items[0].title"),
    ({"items": [{"id": "a", "fields": {"brand": 1}}]}, "items[0].fields.brand"),
    ({"items": [{"id": "a", "colour": "red"}]}, "items[0].colour"),
    ({"items": [{"id": "a", "embedding": ["x"]}]}, "items[0].embedding[0]"),
    ({"items": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]}, "items"),
    ({"items": [{"id": "a"}]}, "items"),  # no text for the run's template
]


@pytest.mark.parametrize(("body", "field"), BAD_ITEMS, ids=[f for _, f in BAD_ITEMS])
def test_bad_item_requests_name_the_field(rec, body, field):
    client = TestClient(create_app(rec), raise_server_exceptions=False)
    assert_error(client.post("/items", json=body), 422, field)
    assert rec.num_items == N  # nothing added to the shared recommender


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "a", "limit": 0}, "limit"),
        ({"q": "a", "limit": 201}, "limit"),
        ({"q": "a", "limit": "ten"}, "limit"),
    ],
)
def test_bad_search_requests_name_the_field(client, params, field):
    assert_error(client.get("/items", params=params), 422, field)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{bad json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"a string"', "application/json"),
        (b"null", "application/json"),
        (b"", "application/json"),
        (b"\xff\xfe{", "application/json"),  # not UTF-8
        (b'{"history": ["i1"]}', "text/plain"),
    ],
    ids=["malformed", "list", "string", "null", "empty", "not-utf8", "not-json-type"],
)
@pytest.mark.parametrize("route", ["/recommend", "/recommend/batch", "/items"])
def test_unparsable_bodies_are_422_naming_the_body(client, route, content, content_type):
    r = client.post(route, content=content, headers={"content-type": content_type, "X-API-Key": KEY})
    assert_error(r, 422, "body")


def test_huge_bodies_are_413(client):
    big = json.dumps({"history": ["i1"] * 400_000}).encode()  # 2.4 MB > the 2 MB default
    assert_error(client.post("/recommend", content=big, headers={"content-type": "application/json"}), 413, "body")
    assert_error(client.post("/recommend", content=b"{}", headers={"content-length": "99999999999"}), 413, "body")

    def chunks(data: bytes, size: int = 64_000):
        for start in range(0, len(data), size):
            yield data[start : start + size]

    # a chunked body without Content-Length is cut off once it passes the limit
    r = client.post("/recommend", content=chunks(big), headers={"content-type": "application/json"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_error(r, 413, "body")
    # a small chunked body is read as usual
    r = client.post(
        "/recommend", content=chunks(b'{"history": ["i1"], "k": 2}', 5), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    # the limit is the app's setting
    small = TestClient(create_app(client.app.state.recommender, max_body_bytes=100))
    assert_error(small.post("/recommend", json={"history": ["i1"] * 50}), 413, "body")
    assert small.post("/recommend", json={"history": ["i1"]}).status_code == 200


def test_unknown_route_and_wrong_method(client):
    assert_error(client.get("/nothing/here"), 404, "path")
    assert_error(client.post("/recommend/nope", json={}), 404, "path")
    r = client.get("/recommend")
    assert_error(r, 405, "method")
    assert "POST" in r.headers["allow"]
    assert_error(client.delete("/items"), 405, "method")
    assert_error(client.put("/items/i1"), 405, "method")


# --- 4. concurrent writes and reads ------------------------------------------------------
def test_concurrent_writes_and_reads_are_consistent(load):
    from padrec.serving.schemas import RecommendResponse

    rec = load()
    client = TestClient(create_app(rec, api_key=KEY), raise_server_exceptions=False)
    kinds = ["Green Tea", "Pasta", "Rice", "Oat Milk"]
    writers, per_writer = 4, 3
    batches = [
        [{"id": f"w{w}-{j}", "title": f"{kinds[w]} No. {100 + 10 * w + j}"} for j in range(per_writer)]
        for w in range(writers)
    ]
    errors: list[str] = []
    done = threading.Event()
    reads = Counter()

    def write(batch):
        for item in batch:  # one item per request: many interleavings
            r = client.post("/items", json={"items": [item]}, headers={"X-API-Key": KEY})
            if r.status_code != 200 or r.json()["items"][0]["created"] is not True:
                errors.append(f"write {item['id']}: {r.status_code} {r.text}")

    def read_http(t):
        while not done.is_set():
            r = client.post("/recommend", json={"history": TEA[t % 4 :], "k": 5})
            if r.status_code != 200:
                errors.append(f"read: {r.status_code} {r.text}")
                continue
            out = RecommendResponse.model_validate(r.json())
            if len(out.items) != 5 or {it.id for it in out.items} & set(TEA):
                errors.append(f"read: bad answer {r.text}")
            reads["http"] += 1

    def read_direct():
        while not done.is_set():
            try:
                r = rec.recommend([2, 3, 4], k=8, explain=True)
                n = rec.num_items
                assert len(r.items) == 8 and all(0 < i <= n for i in r.items)
                assert all(math.isfinite(s) for s in r.scores)
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(f"direct read: {exc!r}")
            reads["direct"] += 1

    threads = [threading.Thread(target=read_http, args=(t,)) for t in range(2)]
    threads.append(threading.Thread(target=read_direct))
    wthreads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads + wthreads:
        t.start()
    for t in wthreads:
        t.join(timeout=120)
    done.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[:5]
    assert reads["http"] > 0 and reads["direct"] > 0

    added = [it["id"] for b in batches for it in b]
    total = N + len(added)
    assert rec.num_items == rec.method.num_items == total
    assert Counter(rec.catalog.item_ids[N + 1 :]) == Counter(added)  # each exactly once
    assert sorted(rec.catalog.lookup(i) for i in added) == list(range(N + 1, total + 1))
    assert rec.catalog.added == set(range(N + 1, total + 1))
    assert rec.factors.items.shape[0] == total + 1
    for raw in added:  # every title and id resolves to the same item
        i = rec.catalog.lookup(raw)
        assert rec.catalog.resolve(rec.catalog.titles[i]) == i

    # the same items added one by one, in order, to a fresh recommender
    fresh = load()
    for b in batches:
        for item in b:
            fresh.add_items([NewItem(item["id"], item["title"])])
    for history in (TEA, ["i2", "i3"], ["w0-1", "w2-0", "i5"], ["w3-2"]):
        got = _scores_by_raw_id(rec, history)
        want = _scores_by_raw_id(fresh, history)
        assert set(got) == set(want)
        for raw, s in want.items():
            assert got[raw] == pytest.approx(s, abs=1e-3), raw


def test_waiting_writer_goes_before_new_readers():
    """A steady stream of requests must not starve ``add_items``: once a writer waits, new
    readers queue behind it."""
    from padrec.serving.recommender import ReadWriteLock

    lock = ReadWriteLock()
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def first_reader():
        with lock.read():
            holding.set()
            release.wait(10)

    def writer():
        with lock.write():
            order.append("writer")

    def late_reader():
        with lock.read():
            order.append("reader")

    a = threading.Thread(target=first_reader)
    a.start()
    assert holding.wait(10)
    b = threading.Thread(target=writer)
    b.start()
    for _ in range(1000):  # until the writer waits
        if lock._writers_waiting:
            break
        threading.Event().wait(0.005)
    assert lock._writers_waiting == 1
    c = threading.Thread(target=late_reader)
    c.start()
    c.join(0.2)
    assert c.is_alive() and order == []  # the late reader waits for the writer
    release.set()
    for t in (a, b, c):
        t.join(10)
    assert order == ["writer", "reader"]


def _scores_by_raw_id(rec: Recommender, history: list[str]) -> dict[str, float]:
    hist = [rec.catalog.resolve(t) for t in history]
    r = rec.recommend(hist, k=rec.num_items, exclude_history=False)
    assert len(r.items) == rec.num_items
    return {rec.catalog.item_ids[i]: s for i, s in zip(r.items, r.scores)}


# --- 5. run directories that fail verification --------------------------------------------
def _damaged(pad_run, tmp_path, how: str):
    run = tmp_path / how
    shutil.copytree(pad_run, run)
    if how == "incomplete":
        (run / "status.json").write_text(json.dumps({"status": "training", "since": "2024-01-01T00:00:00"}))
    elif how == "truncated":
        path = run / "serving.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "item-ids":
        meta = json.loads((run / "serving.json").read_text())
        meta["item_ids"] = meta["item_ids"][:-3]
        (run / "serving.json").write_text(json.dumps(meta))
    elif how == "missing":
        (run / "serving.safetensors").unlink()
    return run


DAMAGE = {
    "incomplete": "did not finish",
    "truncated": "serving.safetensors",
    "item-ids": "'item_ids' has 38 entries",
    "missing": "no serving.safetensors",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_damaged_run_is_refused(pad_run, tmp_path, how):
    run = _damaged(pad_run, tmp_path, how)
    with pytest.raises(Exception, match=re.escape(DAMAGE[how])):
        Recommender.load(run)
    result = CliRunner().invoke(cli_app, ["serve", str(run), "--port", "8765"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert DAMAGE[how] in lines[0] and "Traceback" not in result.output


# --- 6. the ANN path ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings", [{"kind": "ivf", "nlist": 4, "nprobe": 4}, {"kind": "hnsw", "ef_search": 64}], ids=["ivf", "hnsw"]
)
def test_ann_top_k_matches_exact_and_follows_new_items(load, settings):
    """With every list scanned (ivf) or a candidate list longer than the catalogue (hnsw) the
    index finds the exact top-k."""
    pytest.importorskip("faiss", reason="the ANN path needs faiss (pip install faiss-cpu)")
    ann = load(ann=AnnConfig(threshold=10, **settings))
    exact = load()
    assert ann.describe()["top_k"] == "ann" and ann.ann is not None and ann.ann.size == N
    assert exact.describe()["top_k"] == "exact"
    client = TestClient(create_app(ann))
    assert client.get("/health").json()["top_k"] == "ann"
    for history in ([1, 2, 3], [5], [10, 11, 12, 13], [1, 9, 17, 25]):
        a, e = ann.recommend(history, k=10, explain=True), exact.recommend(history, k=10, explain=True)
        assert a.items == e.items and not set(history) & set(a.items)
        assert a.scores == pytest.approx(e.scores, abs=1e-4)
        for name in e.parts:
            assert a.parts[name] == pytest.approx(e.parts[name], abs=1e-4)
        a, e = ann.recommend(history, k=N, deny=[6, 7]), exact.recommend(history, k=N, deny=[6, 7])
        assert a.items == e.items and len(a.items) == N - len(set(history) | {6, 7})
    out = recommend(client, history=["i1", "i2"], k=6)
    assert len(out["items"]) == 6 and not {"i1", "i2"} & set(ids_of(out))

    items = [NewItem("ann-1", "Green Tea No. 98"), NewItem("ann-2", "Dark Chocolate No. 97")]
    ann.add_items(items)
    exact.add_items(items)
    assert ann.ann.size == N + 2
    for history in ([1, 9, 17], [N + 1], [3, N + 2]):
        a = ann.recommend(history, k=N + 2, exclude_history=False)
        e = exact.recommend(history, k=N + 2, exclude_history=False)
        assert a.items == e.items and {N + 1, N + 2} <= set(a.items)
        assert a.scores == pytest.approx(e.scores, abs=1e-4)
    # updating an item's text replaces its row in the index
    ann.add_items([NewItem("ann-1", "Olive Oil No. 98")])
    exact.add_items([NewItem("ann-1", "Olive Oil No. 98")])
    assert ann.ann.size == N + 2
    a, e = ann.recommend([4, 5], k=N + 2), exact.recommend([4, 5], k=N + 2)
    assert a.items == e.items

    # fewer lists scanned: still valid items, never the history
    if settings["kind"] != "ivf":
        return
    rough = load(ann=AnnConfig(threshold=10, kind="ivf", nlist=4, nprobe=1))
    r = rough.recommend([1, 2, 3], k=5)
    assert 0 < len(r.items) <= 5 and not {1, 2, 3} & set(r.items) and all(0 < i <= N for i in r.items)
    assert r.scores == sorted(r.scores, reverse=True)


# --- 7. the command ----------------------------------------------------------------------
def test_serve_help():
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "/recommend" in result.output and "--api-key" in result.output


def test_catalog_title_index_survives_renames():
    from padrec.serving.catalog import Catalog

    cat = Catalog(["[PAD]", "a", "b", "c"], ["", "Tea", "tea", "Coffee"])
    assert cat.resolve("TEA") == 1
    cat.set_item(1, "a", "Green Tea", new=False)
    assert cat.resolve("tea") == 2 and cat.resolve("green tea") == 1
    cat.set_item(4, "d", "Rice", new=True)
    assert cat.resolve("rice") == 4 and cat.added == {4}
    assert cat.search("tea") == [2, 1]
