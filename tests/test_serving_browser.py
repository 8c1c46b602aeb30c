"""The web page of ``padrec serve`` in a real headless Chromium: search, history,
recommendations with expert-share bars, adding an item and API errors in the status area.

Skips when selenium or Debian's chromium/chromedriver are missing."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from serving_helpers import KINDS, requires_minilm, train_run

pytest.importorskip("selenium", reason="selenium not installed")


def _find(name: str, default: str) -> str | None:
    return default if Path(default).exists() else shutil.which(name)


CHROMIUM = _find("chromium", "/usr/bin/chromium")
CHROMEDRIVER = _find("chromedriver", "/usr/bin/chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("chromium/chromedriver not installed (apt install chromium chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

API_KEY = "secret"
KIND_TITLES = {i: f"{KINDS[(i - 1) % len(KINDS)].title()} No. {i}" for i in range(1, 41)}
WAIT_S = 20


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """A real uvicorn server (background thread, free port) over a tiny trained PAD run."""
    requires_minilm()
    pytest.importorskip("uvicorn", reason="needs the serve extra (uvicorn)")
    import uvicorn

    from padrec.serving.app import create_app
    from padrec.serving.recommender import Recommender

    run = train_run(tmp_path_factory.mktemp("browser") / "pad", epochs=1)
    app = create_app(Recommender.load(run), api_key=API_KEY)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def driver(base_url):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield drv
    drv.quit()


@pytest.fixture
def page(driver, base_url):
    """A fresh page (empty history), loaded and connected to the service."""
    driver.set_window_size(1280, 900)
    driver.get(base_url + "/")
    wait(driver, lambda d: "items" in d.find_element(By.ID, "served").text, "header from /health")
    yield driver
    # no script errors (failed requests, e.g. the 401 some tests provoke, are logged as "network")
    errors = [e["message"] for e in driver.get_log("browser") if e.get("source") != "network"]
    assert not errors, f"errors in the browser console: {errors}"


# --- helpers ------------------------------------------------------------------------------
def api(base_url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def wait(driver, cond, what: str):
    """Wait for ``cond`` (retrying stale elements); on timeout say what and show #status."""

    def check(d):
        try:
            return cond(d)
        except StaleElementReferenceException:
            return False

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(check)
    except TimeoutException:
        status = driver.find_element(By.ID, "status").text
        raise AssertionError(f"timed out waiting for {what}; #status says: {status!r}") from None


def rendered_seq(driver) -> int:
    return int(driver.find_element(By.ID, "recs").get_attribute("data-seq"))


def wait_recs(driver, after: int, what: str) -> list[dict]:
    """Wait until the recommendations table shows an answer newer than render ``after``;
    its rows as data (:func:`shown_rows`)."""

    def ready(d):
        t = d.find_element(By.ID, "recs")
        return int(t.get_attribute("data-seq")) > after and t.get_attribute("data-state") in ("ready", "empty")

    wait(driver, ready, what)
    return shown_rows(driver)


def search(driver, text: str) -> list:
    """Type ``text`` in the search box and return the match buttons once they are this query's
    (``#results[data-q]`` is the query the list shows)."""
    box = driver.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text)

    def matches(d):
        if d.find_element(By.ID, "results").get_attribute("data-q") != text:
            return False
        return d.find_elements(By.CSS_SELECTOR, "#results button.match") or False

    return wait(driver, matches, f"search results for {text!r}")


def pick(driver, text: str, title: str) -> None:
    """Search ``text`` and click the match titled ``title``."""
    buttons = search(driver, text)
    hit = [b for b in buttons if b.find_element(By.CLASS_NAME, "title").text == title]
    assert hit, f"{title!r} not among the matches for {text!r}"
    hit[0].click()


def history_ids(driver) -> list[str]:
    return [li.get_attribute("data-id") for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]


ROWS_JS = """
return [...document.querySelectorAll('#recs tbody tr.rec')].map((tr) => ({
  id: tr.dataset.id,
  title: tr.querySelector('.title').textContent,
  new: !!tr.querySelector('.badge-new'),
  bar: !!tr.querySelector('.bar') && tr.querySelector('.bar').getBoundingClientRect().width > 0,
  segs: [...tr.querySelectorAll('.bar .seg')].map((s) => [s.dataset.part, Number(s.dataset.value), s.classList.contains('neg')]),
}));
"""


def shown_rows(driver) -> list[dict]:
    """The recommendations table as data (one script call instead of one call per cell)."""
    return driver.execute_script(ROWS_JS)


def check_rows_match_api(driver, answer: dict) -> list[dict]:
    """Each row shows the API's item (title, id, new badge) and a visible bar with a segment
    per part whose value and negative marking agree with the API's parts."""
    rows = shown_rows(driver)
    assert [r["id"] for r in rows] == [it["id"] for it in answer["items"]]
    for row, it in zip(rows, answer["items"]):
        assert row["title"] == it["title"] and row["new"] == it["new"] and row["bar"]
        assert {part: value for part, value, _ in row["segs"]} == pytest.approx(it["parts"], rel=1e-6, abs=1e-9)
        assert all(neg == (value < 0) for _, value, neg in row["segs"])
    return rows


# --- tests --------------------------------------------------------------------------------
def test_header_and_legend_show_what_is_served(page, base_url):
    health = api(base_url, "/health")
    served = page.find_element(By.ID, "served").text
    assert health["method"] in served and f"{health['num_items']} items" in served
    legend = [e.get_attribute("data-part") for e in page.find_elements(By.CSS_SELECTOR, "#legend [data-part]")]
    assert legend == health["parts"] == ["id", "align", "llm"]
    assert "negative" in page.find_element(By.ID, "legend").text
    assert "error" not in page.find_element(By.ID, "status").get_attribute("class")


def test_search_history_and_recommendations(page, base_url):
    seq = rendered_seq(page)
    pick(page, "green tea", "Green Tea No. 1")
    assert history_ids(page) == ["i1"]
    assert "Green Tea No. 1" in page.find_element(By.ID, "history").text
    rows = wait_recs(page, seq, "recommendations for one item")
    assert len(rows) == 10  # default k
    assert all(r["title"] and r["bar"] and len(r["segs"]) == 3 for r in rows)
    assert page.find_element(By.ID, "recs").get_attribute("data-history") == "i1"
    assert "ms" in page.find_element(By.ID, "latency").text
    check_rows_match_api(page, api(base_url, "/recommend", {"history": ["i1"], "k": 10, "exclude_history": True}))

    seq = rendered_seq(page)
    pick(page, "pasta", "Pasta No. 3")
    assert history_ids(page) == ["i1", "i3"]
    rows = wait_recs(page, seq, "recommendations for two items")
    assert len(rows) == 10
    assert not {"i1", "i3"} & {r["id"] for r in rows}  # history excluded

    seq = rendered_seq(page)
    Select(page.find_element(By.ID, "k")).select_by_value("5")
    assert len(wait_recs(page, seq, "top 5")) == 5
    check_rows_match_api(page, api(base_url, "/recommend", {"history": ["i1", "i3"], "k": 5, "exclude_history": True}))

    seq = rendered_seq(page)
    page.find_element(By.ID, "exclude-history").click()
    wait_recs(page, seq, "recommendations with the history allowed")
    check_rows_match_api(page, api(base_url, "/recommend", {"history": ["i1", "i3"], "k": 5, "exclude_history": False}))

    seq = rendered_seq(page)
    page.find_element(By.CSS_SELECTOR, "#history li[data-id=i1] button.remove").click()
    assert history_ids(page) == ["i3"]
    wait_recs(page, seq, "recommendations after removing an item")
    assert page.find_element(By.ID, "recs").get_attribute("data-history") == "i3"

    seq = rendered_seq(page)
    page.find_element(By.ID, "clear").click()
    assert wait_recs(page, seq, "the empty table") == []
    assert history_ids(page) == []
    assert "error" not in page.find_element(By.ID, "status").get_attribute("class")


def test_negative_parts_are_hatched(page, base_url):
    """Across a few histories this model gives some negative expert contributions; each is
    drawn as a hatched segment (and only those)."""
    answers = [api(base_url, "/recommend", {"history": [f"i{i}"], "k": 40}) for i in (1, 2, 3)]
    negative = [h for h, a in zip((1, 2, 3), answers) if any(v < 0 for it in a["items"] for v in it["parts"].values())]
    assert negative, "no negative part in this model's answers"
    Select(page.find_element(By.ID, "k")).select_by_value("40")  # empty history: no request
    seq = rendered_seq(page)
    pick(page, KINDS[(negative[0] - 1) % len(KINDS)], KIND_TITLES[negative[0]])
    rows = wait_recs(page, seq, "all recommendations")
    check_rows_match_api(page, answers[negative[0] - 1])
    assert any(neg for r in rows for _, _, neg in r["segs"])
    hatched = page.find_element(By.CSS_SELECTOR, "#recs .seg.neg").value_of_css_property("background-image")
    assert "repeating-linear-gradient" in hatched


def test_add_item_error_then_success(page, base_url):
    page.find_element(By.ID, "add-id").send_keys("gt99")
    page.find_element(By.ID, "add-title").send_keys("Green Tea No. 99")
    page.find_element(By.ID, "add-key").send_keys("wrong")
    page.find_element(By.ID, "add-submit").click()
    status = page.find_element(By.ID, "status")
    wait(page, lambda d: "missing or wrong X-API-Key header" in status.text, "the API's 401 message")
    assert "error" in status.get_attribute("class").split() and status.is_displayed()
    assert "401" in status.text
    assert "X-API-Key" in page.find_element(By.ID, "add-result").text
    assert api(base_url, "/health")["num_items"] == 40  # nothing added

    key = page.find_element(By.ID, "add-key")
    key.clear()
    key.send_keys(API_KEY)
    page.find_element(By.ID, "add-submit").click()
    wait(page, lambda d: "Added" in d.find_element(By.ID, "add-result").text, "the add result")
    assert "error" not in status.get_attribute("class")
    wait(page, lambda d: "41 items" in d.find_element(By.ID, "served").text, "the header's new item count")

    buttons = search(page, "Green Tea No. 99")
    assert len(buttons) == 1 and buttons[0].get_attribute("data-id") == "gt99"
    assert buttons[0].find_element(By.CLASS_NAME, "badge-new").text.lower() == "new"

    # the new item is recommendable: with k = all it is in the answer, with its badge
    Select(page.find_element(By.ID, "k")).select_by_value("41")
    seq = rendered_seq(page)
    pick(page, "green tea", "Green Tea No. 1")
    rows = wait_recs(page, seq, "all recommendations")
    assert len(rows) == 40  # 41 items less the history
    assert [r["new"] for r in rows if r["id"] == "gt99"] == [True]
    check_rows_match_api(page, api(base_url, "/recommend", {"history": ["i1"], "k": 41, "exclude_history": True}))


def test_narrow_window_has_no_horizontal_scroll(page):
    page.set_window_size(380, 800)
    search(page, "rice")
    page.find_element(By.ID, "search").send_keys(Keys.ENTER)  # Enter adds the first match
    wait(page, lambda d: history_ids(d) == ["i6"], "Enter to add Rice No. 6")
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#recs tbody tr.rec"), "recommendations")
    width = page.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert width[0] <= width[1], f"page wider than the window: {width}"
    for elem in ("search", "add-id", "add-submit", "k"):
        assert page.find_element(By.ID, elem).is_displayed()
