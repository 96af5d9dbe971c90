#!/usr/bin/env python3
"""Drives each dashboard page in headless Chromium against a live mesh.

Run by tests/e2e/dashboard.rs, which starts the mesh, ingests a dataset,
trains a model twice and passes what the pages must show:

    test_dashboard.py --screenshots DIR --peers ID,ID,.. --dataset NAME
        --model NAME --row JSON [--token-url URL --read-token TOKEN] URL [URL ...]

Checks that every URL's mesh page lists every peer as up; that the first
node's pages show the dataset's shards and holders, the model's completed
jobs with loss curves, its versions and metrics, and metrics sampled over
time; clicks Rollback (and checks through the API and a prediction that
the served version changed, and that a second rollback's refusal is shown),
then Promote back. With a token node: the page shows the 401 until a token
is pasted, and a read token's Rollback shows the 403 and changes nothing.
Saves a screenshot of each page in DIR. Fails (never skips) without
Chromium and its driver. Every wait has a deadline.
"""

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("MASS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MASS_CHROMEDRIVER", "/usr/bin/chromedriver")
# A deadline, not a pause: generous for a loaded CI machine, and a pass
# returns as soon as the page shows what is expected.
WAIT_S = 30

for path, package in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")]:
    if not os.path.exists(path):
        sys.exit(f"test_dashboard: {path} is missing: install Debian's {package} (scripts/setup.sh does)")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def api(url, path, token=None, method="GET", body=None, text=False):
    """Calls the node's API directly (what the page must agree with)."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        content = response.read().decode()
    return content if text else json.loads(content)


class Check:
    def __init__(self, driver, screenshots):
        self.driver = driver
        self.screenshots = screenshots
        self.shots = []

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, what, condition, timeout=WAIT_S):
        """Waits until `condition(driver)` is truthy; on timeout says what the page showed."""
        wait = WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        )
        try:
            return wait.until(condition)
        except TimeoutException:
            shown = self.js(
                "const e = document.getElementById('error'); return (e && !e.hidden ? e.innerText : '(no error shown)')"
            )
            self.shot("failure")
            raise AssertionError(
                f"timed out after {timeout} s waiting for: {what}\n"
                f"page: {self.driver.current_url}\nerrors shown: {shown}"
            ) from None

    def open(self, url):
        self.driver.get(url)
        self.wait("the page's script starts", lambda d: self.js("return !!document.body.dataset.page"))

    def go(self, page):
        """Follows the tab link, as a person would."""
        self.click(f'#tabs a[data-tab="{page}"]')
        self.wait(f"the {page} page shows", lambda d: self.js("return document.body.dataset.page") == page)

    def click(self, selector):
        """Clicks the element, again if a refresh replaced it in between."""

        def clicked(driver):
            element = driver.find_element(By.CSS_SELECTOR, selector)
            if not element.is_displayed() or not element.is_enabled():
                return False
            element.click()
            return True

        self.wait(f"{selector} can be clicked", clicked)

    def accept(self, what):
        def accepted(driver):
            try:
                alert = driver.switch_to.alert
            except NoAlertPresentException:
                return False
            text = alert.text
            alert.accept()
            return text

        return self.wait(f"the page asks to confirm {what}", accepted, timeout=10)

    def shot(self, name):
        """A screenshot of the whole page, below the window's height too."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path = os.path.join(self.screenshots, f"{len(self.shots):02}-{name}.png")
        with open(path, "wb") as out:
            out.write(base64.b64decode(shot["data"]))
        self.shots.append(path)
        print(f"screenshot {path}")


def check_mesh(check, url, peers):
    check.open(url + "/#mesh")
    expected = api(url, "/v1/health")["peer_id"]
    rows = check.wait(
        "every peer is listed as up with its hardware",
        lambda d: (
            lambda rows: rows if all(rows.get(p, {}).get("state") == "up" and rows[p]["gflops"] for p in peers) else False
        )(
            check.js(
                "const out = {}; for (const r of document.querySelectorAll('#peers tr[data-peer]')) "
                "out[r.dataset.peer] = {state: r.dataset.state, self: r.dataset.self === 'true', "
                "gflops: Number(r.querySelector('[data-gflops]')?.dataset.gflops || 0)}; return out"
            )
        ),
    )
    selves = [p for p, row in rows.items() if row["self"]]
    assert selves == [expected], f"{url}: the page marks {selves} as this node, the node is {expected}"
    shown = check.wait("the header names the node", lambda d: check.js("return document.getElementById('node').dataset.peerId"))
    assert shown == expected, f"{url}: header shows {shown}, the node is {expected}"
    print(f"mesh {url}: {len(peers)} peers up, this node {expected[-8:]}")


def check_dataset(check, url, name, peers):
    view = api(url, f"/v1/datasets/{name}")
    shards = len(view["manifest"]["shards"])
    columns = [c["name"] for c in view["manifest"]["schema"]["columns"]]
    check.go("datasets")
    card = f'#page-datasets article[data-dataset="{name}"]'
    shown = check.wait(
        f"dataset {name} shows its {shards} shards with their holders",
        lambda d: (
            lambda s: s if s and s["count"] == str(shards) and len(s["holders"]) == shards else False
        )(
            check.js(
                "const a = document.querySelector(arguments[0]); if (!a) return null; "
                "return {count: a.dataset.shards, "
                "holders: [...a.querySelectorAll('table.shards tr[data-shard]')].map(r => r.dataset.holders.split(' ').filter(Boolean)), "
                "columns: [...a.querySelectorAll('table.schema tr[data-column]')].map(r => r.dataset.column)}",
                card,
            )
        ),
    )
    assert shown["columns"] == columns, f"schema shown {shown['columns']}, the manifest has {columns}"
    for i, holders in enumerate(shown["holders"]):
        assert holders and set(holders) <= set(peers), f"shard {i}: holders shown {holders}, peers {peers}"
        assert set(holders) == set(view["shard_holders"][i]), f"shard {i}: shown {holders}, API {view['shard_holders'][i]}"
    check.shot("datasets")
    print(f"datasets: {name} shows {shards} shards, {len(columns)} columns, holders as the API says")


def check_jobs(check, url, model):
    jobs = [j for j in api(url, "/v1/jobs") if j["spec"]["model"] == model]
    assert len(jobs) >= 2, f"the API lists {len(jobs)} jobs of {model}"
    check.go("jobs")
    for job in jobs:
        curve = len(job["tasks"][0]["curve"])
        assert curve >= 2, f"job {job['id']}: the API gives a loss curve of {curve} epochs"
        card = f'#page-jobs article[data-job="{job["id"]}"]'
        shown = check.wait(
            f"job {job['id'][:12]} shows completed with its loss curve",
            lambda d: (
                lambda s: s if s and s["state"] == "completed" and s["points"] == curve else False
            )(
                check.js(
                    "const a = document.querySelector(arguments[0]); if (!a) return null; "
                    "const line = a.querySelector('figure[data-chart=loss] polyline'); "
                    "return {state: a.dataset.state, points: line ? Number(line.dataset.points) : 0}",
                    card,
                )
            ),
        )
        print(f"jobs: {job['id'][:12]} completed, loss curve of {shown['points']} epochs")
    check.shot("jobs")


def model_state(check, model):
    return check.js(
        "const a = document.querySelector(arguments[0]); if (!a) return null; "
        "return {current: a.dataset.current, versions: [...a.querySelectorAll('table.versions tr[data-version]')]"
        ".map(r => ({version: r.dataset.version, served: r.dataset.served, "
        "accuracy: r.querySelector('[data-metric=accuracy]')?.textContent}))}",
        f'#page-models article[data-model="{model}"]',
    )


def served(url, model, row, token=None):
    """The version the API says is served, and the one a prediction came from."""
    current = api(url, f"/v1/models/{model}", token)["version"]
    answered = api(url, f"/v1/models/{model}/predict", token, "POST", {"rows": [row]})["version"] if row else current
    return current, answered


def check_models(check, url, model, row):
    view = api(url, f"/v1/models/{model}")
    assert view["version"] == 2 and len(view["versions"]) == 2, f"expected 2 versions, serving 2: {view['versions']}"
    check.go("models")
    shown = check.wait(
        f"model {model} shows versions 1 and 2, serving 2",
        lambda d: (
            lambda s: s
            if s and s["current"] == "2" and [(v["version"], v["served"]) for v in s["versions"]] == [("1", "false"), ("2", "true")]
            else False
        )(model_state(check, model)),
    )
    for v in view["versions"]:
        accuracy = api(url, f"/v1/models/{model}/versions/{v['manifest']}")["evaluation"]["accuracy"]
        on_page = float(shown["versions"][v["version"] - 1]["accuracy"])
        assert abs(on_page - accuracy) <= 0.005, f"version {v['version']}: page shows accuracy {on_page}, API {accuracy}"
    robustness = len(view["manifest"]["evaluation"]["robustness"])
    rows = check.js(
        "return document.querySelectorAll(arguments[0]).length",
        f'table[data-robustness="{model}"] tr[data-perturbation]',
    )
    assert robustness > 0 and rows == robustness + 1, f"robustness rows shown {rows}, report has {robustness} checks"
    check.shot("models")

    # Rollback: the mesh serves version 1.
    check.click(f'#page-models article[data-model="{model}"] button[data-action="rollback"]')
    check.accept("the rollback")
    check.wait("the API serves version 1 after Rollback", lambda d: served(url, model, row) == (1, 1))
    check.wait("the page shows version 1 served", lambda d: (model_state(check, model) or {}).get("current") == "1")
    notice = check.js("return document.getElementById('notice').textContent")
    assert "now serves version 1" in notice, notice
    print("models: Rollback -> version 1 served (API, prediction and page)")

    # Again: there is nothing before version 1, and the page says so.
    check.click(f'#page-models article[data-model="{model}"] button[data-action="rollback"]')
    check.accept("the second rollback")
    message = check.wait(
        "the refusal of a rollback past version 1 is shown",
        lambda d: check.js("return document.querySelector('[data-error=action]')?.textContent"),
    )
    assert "409" in message and "nothing to roll back to" in message, message
    assert served(url, model, row) == (1, 1)
    check.shot("models-refused")
    print(f"models: a second Rollback is refused on the page: {message.rstrip('×').strip()}")

    # Promote version 2 back.
    check.click(f'#page-models article[data-model="{model}"] tr[data-version="2"] button[data-action="promote"]')
    check.accept("the promotion")
    check.wait("the API serves version 2 after Promote", lambda d: served(url, model, row) == (2, 2))
    check.wait("the page shows version 2 served", lambda d: (model_state(check, model) or {}).get("current") == "2")
    check.wait("the refusal shown before is cleared", lambda d: check.js("return !document.querySelector('[data-error=action]')"))
    check.shot("models-promoted")
    print("models: Promote v2 -> version 2 served (API, prediction and page)")


def check_metrics(check, url):
    check.go("metrics")
    key = 'mass_peers{state="up"}'
    shown = check.wait(
        "three samples of /metrics plotted",
        lambda d: (
            lambda s: s if s and s["samples"] >= 3 and s["peers"] is not None else False
        )(
            check.js(
                "const f = document.querySelector('figure[data-chart=peers]'); if (!f) return null; "
                "const row = [...document.querySelectorAll('table.metrics tr[data-metric]')].find(r => r.dataset.metric === arguments[0]); "
                "return {samples: Number(f.dataset.samples), charts: document.querySelectorAll('#page-metrics figure[data-chart]').length, "
                "peers: row ? Number(row.querySelector('td.num').textContent) : null, "
                "up: Number(f.querySelector('polyline[data-series=up]')?.dataset.points || 0)}",
                key,
            )
        ),
    )
    text = api(url, "/metrics", text=True)
    actual = next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))
    assert shown["peers"] == actual, f"page shows {key} = {shown['peers']}, /metrics says {actual}"
    assert shown["charts"] >= 4 and shown["up"] >= 3, shown
    check.shot("metrics")
    print(f"metrics: {shown['charts']} charts, {shown['samples']} samples, {key} = {actual:g} as /metrics says")


def check_token_node(check, url, token, model, peers):
    check.open(url + "/#mesh")
    message = check.wait(
        "the page shows the node's 401",
        lambda d: check.js("return document.querySelector('#error [data-error=\"page:mesh\"]')?.textContent"),
    )
    assert "401" in message and "requires an API token" in message, message
    check.shot("token-required")
    box = check.driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token)
    check.click("#token-save")
    check.wait(
        "with the read token every peer is listed as up",
        lambda d: all(
            check.js("return document.querySelector(arguments[0])?.dataset.state", f'#peers tr[data-peer="{p}"]') == "up"
            for p in peers
        ),
    )
    # A refresh sent before the token was pasted may still answer 401 once.
    check.wait("no error is shown with the token", lambda d: check.js("return document.getElementById('error').hidden"))
    check.go("models")
    check.wait("the models page shows the model", lambda d: (model_state(check, model) or {}).get("current") == "2")
    check.click(f'#page-models article[data-model="{model}"] button[data-action="rollback"]')
    check.accept("the rollback")
    message = check.wait(
        "a read token's rollback is refused on the page",
        lambda d: check.js("return document.querySelector('[data-error=action]')?.textContent"),
    )
    assert "403" in message and "needs write" in message, message
    assert api(url, f"/v1/models/{model}", token)["version"] == 2, "a refused rollback changed the served version"
    check.shot("token-forbidden")
    print(f"token node: 401 shown without a token; read token sees the mesh; its Rollback shows: {message.rstrip('×').strip()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--peers", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--row", help="a JSON row to predict, to check which version answers")
    parser.add_argument("--token-url")
    parser.add_argument("--read-token")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    peers = args.peers.split(",")
    row = json.loads(args.row) if args.row else None
    os.makedirs(args.screenshots, exist_ok=True)

    options = Options()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
    ]:
        options.add_argument(flag)
    started = time.monotonic()
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        check = Check(driver, args.screenshots)
        for url in args.urls:
            check_mesh(check, url, peers)
            if url == args.urls[0]:
                check.shot("mesh")
        check.open(args.urls[0] + "/#mesh")
        check_dataset(check, args.urls[0], args.dataset, peers)
        check_jobs(check, args.urls[0], args.model)
        check_models(check, args.urls[0], args.model, row)
        check_metrics(check, args.urls[0])
        if args.token_url:
            check_token_node(check, args.token_url, args.read_token, args.model, peers)
        # The refusals the checks provoked are logged by the browser as failed
        # loads; an error thrown by the script is not expected.
        logs = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        script_errors = [e for e in logs if "app.js" in e.get("message", "") and "Failed to load" not in e["message"]]
        assert not script_errors, f"the dashboard's script failed: {script_errors}"
    finally:
        driver.quit()
    print(f"{len(check.shots)} screenshots in {args.screenshots}; {time.monotonic() - started:.1f} s")
    print("ok")


if __name__ == "__main__":
    main()
