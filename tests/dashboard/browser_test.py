#!/usr/bin/python3
"""The dashboard and the report in a real browser: headless Chromium driven by Selenium.

A real `trellis run` fills a store (an ASHA sweep on a small CSV dataset), a real `trellis
dashboard` serves it on a free loopback port, and Chromium (kept off the network: see
../shared/browser-test-notes.md) loads every view. Checked: no console error and no request to
any host but the server; the table sorts; a curve appears for a selected trial; each tab draws;
the live view picks up a sweep that reports while the page is open; the report file works
offline. The server's safety rules are checked over plain HTTP. Screenshots go to --artifacts.

usage: browser_test.py --trellis BIN_DIR/trellis --artifacts DIR
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium.webdriver.common.by import By

import chromium

ARGS = None
FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL: " + message, flush=True)
    else:
        print("ok:   " + message, flush=True)
    return condition


def wait_for(predicate, what, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # a page mid-render: try again
            last = e
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what + " (last: " + repr(last) + ")")


def write_dataset(directory, seed):
    """Three Gaussian blobs in 6 features; train and test CSV files."""
    rng = random.Random(seed)
    centres = [[rng.uniform(-2, 2) for _ in range(6)] for _ in range(3)]
    for name, rows in (("train.csv", 600), ("test.csv", 150)):
        with open(os.path.join(directory, name), "w") as f:
            f.write(",".join("f%d" % k for k in range(6)) + ",label\n")
            for i in range(rows):
                label = i % 3
                f.write(",".join("%.5f" % (c + rng.gauss(0, 1.2)) for c in centres[label]))
                f.write(",%d\n" % label)


def write_spec(path, name, data, trials, epochs, scheduler):
    with open(path, "w") as f:
        f.write(f"""name: {name}
dataset: {{name: blobs, format: csv, path: {data}}}
metric: {{name: val_acc, mode: max}}
search:
  seed: 5
  trials: {trials}
  space:
    lr: {{type: log_float, low: 1.0e-4, high: 0.3}}
    hidden_units: {{type: int, low: 4, high: 64}}
    activation: {{type: categorical, values: [relu, tanh]}}
    dropout: {{type: float, low: 0.0, high: 0.4}}
train: {{model: mlp, hidden_layers: 1, epochs: {epochs}, batch_size: 32}}
{scheduler}
resources: {{ranks_per_trial: 1}}
""")


class Process:
    """A process this test starts and stops by pid (its whole process group)."""

    def __init__(self, argv, log):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def run(argv, log, timeout=600):
    with open(log, "w") as f:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=f, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(" ".join(argv) + " exited " + str(r.returncode) + "; see " + log)
    return r.stdout


def http(url, method="GET", headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def start_dashboard(store, log, *extra):
    p = Process([ARGS.trellis, "dashboard", "--store", store, "--bind", "127.0.0.1:0", *extra], log)
    line = p.proc.stdout.readline()
    m = re.search(r"at (http://127\.0\.0\.1:(\d+)/)", line)
    if not m:
        p.stop()
        raise AssertionError("dashboard did not say where it listens: " + repr(line))
    return p, m.group(1), int(m.group(2))


def check_logs(driver, allowed_prefix, what):
    """No console error; every request went to `allowed_prefix` (or was the page's own data)."""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, what + ": no console error" + ("" if not errors else ": " + repr(errors[:3])))
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    foreign = [u for u in urls if not (u.startswith(allowed_prefix) or u.startswith("data:"))]
    check(urls and not foreign, what + ": %d request(s), all to %s%s" %
          (len(urls), allowed_prefix, "" if not foreign else "; others: " + repr(foreign[:3])))


def shot(driver, name):
    path = os.path.join(ARGS.artifacts, name + ".png")
    driver.save_screenshot(path)
    check(os.path.getsize(path) > 10000, "screenshot " + path)


def column_values(driver, index):
    return driver.execute_script(
        "return [...document.querySelectorAll('#trials tbody tr.row')].map("
        "r => r.children[arguments[0]].textContent)", index)


def click_row(driver, k):
    """Clicks the k-th table row; the table may redraw under the click (a poll, a scroll)."""
    def attempt():
        driver.find_elements(By.CSS_SELECTOR, "#trials tbody tr.row")[k].click()
        return True
    wait_for(attempt, "a click on row %d" % k, 10)


def test_views(driver, url, name):
    driver.get(url + "#/e/" + name)
    wait_for(lambda: driver.execute_script("return window.trellis.rowsShown") > 0, "trials table rows")
    title = driver.find_element(By.ID, "title").text
    check("12 trials" in title, "title counts the trials: " + title)
    shot(driver, "trials")

    # Sort by lr: ascending on the first click, descending on the second.
    names = [h.get_attribute("data-col") for h in
             driver.find_elements(By.CSS_SELECTOR, "#trials thead tr:first-child th")]
    lr_index = names.index("params.lr")
    driver.find_element(By.CSS_SELECTOR, 'th[data-col="params.lr"]').click()
    asc = [float(v) for v in column_values(driver, lr_index)]
    check(len(asc) == 12 and asc == sorted(asc), "sorted by lr ascending: %s" % asc[:4])
    driver.find_element(By.CSS_SELECTOR, 'th[data-col="params.lr"]').click()
    desc = [float(v) for v in column_values(driver, lr_index)]
    check(desc == sorted(asc, reverse=True), "sorted by lr descending")

    # Filter, then clear it.
    box = driver.find_element(By.CSS_SELECTOR, 'input[data-filter="state"]')
    box.send_keys("completed\n")
    states = set(column_values(driver, names.index("state")))
    check(states == {"completed"}, "filter state=completed leaves only completed rows: %s" % states)
    box = driver.find_element(By.CSS_SELECTOR, 'input[data-filter="state"]')
    box.clear()
    box.send_keys("\n")

    # A selected trial gets its curve.
    check(driver.execute_script("return window.trellis.curvesDrawn") == 0, "no curve before a selection")
    click_row(driver, 0)
    wait_for(lambda: driver.execute_script("return window.trellis.curvesDrawn") == 1, "one curve")
    check(driver.find_elements(By.CSS_SELECTOR, "#curves canvas"), "the curve is drawn on a canvas")
    click_row(driver, 1)
    wait_for(lambda: driver.execute_script("return window.trellis.curvesDrawn") == 2, "two curves")
    shot(driver, "curves")

    driver.find_element(By.CSS_SELECTOR, '[data-tab="compare"]').click()
    rows = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#comparison tbody tr"), "comparison rows")
    fields = [r.get_attribute("data-field") for r in rows]
    check("params.lr" in fields and "seed" in fields, "compare shows what differs: %s" % fields[:6])
    driver.find_element(By.ID, "compare-all").click()
    all_rows = wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#comparison tbody tr")) > len(rows) and
                        driver.find_elements(By.CSS_SELECTOR, "#comparison tbody tr"), "all comparison rows")
    check(len(all_rows) > len(rows), "--all shows the rows that are the same too (%d > %d)" % (len(all_rows), len(rows)))
    shot(driver, "compare")

    driver.find_element(By.CSS_SELECTOR, '[data-tab="history"]').click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#history canvas"), "history chart")
    shot(driver, "history")
    driver.find_element(By.CSS_SELECTOR, '[data-tab="parallel"]').click()
    lines = wait_for(lambda: driver.execute_script("return window.trellis.parallelLines"), "parallel lines")
    check(lines >= 1, "parallel coordinates draw %d completed trials" % lines)
    shot(driver, "parallel")
    driver.find_element(By.CSS_SELECTOR, '[data-tab="importance"]').click()
    params = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#importance tr[data-param]"), "importance bars")
    check(sorted(p.get_attribute("data-param") for p in params) == ["activation", "dropout", "hidden_units", "lr"],
          "importance ranks the four searched parameters")
    shot(driver, "importance")
    driver.find_element(By.CSS_SELECTOR, '[data-tab="scheduler"]').click()
    rungs = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#rungs tbody tr"), "ASHA rungs")
    cells = [c.text for c in rungs[0].find_elements(By.TAG_NAME, "td")]
    check(len(cells) == 5 and all(re.search(r"\d", c) for c in cells[2:]),
          "the first rung names trials paused, promoted and stopped there: %s" % cells)
    shot(driver, "scheduler")

    driver.get(url + "#/e/" + name + "/t/0")
    wait_for(lambda: driver.execute_script("return window.trellis.view") == "trial" and
             driver.execute_script("return window.trellis.curvesDrawn") >= 3, "the trial page's charts")
    text = driver.find_element(By.ID, "view").text
    check("Why it ended" in text and "Provenance" in text and "lr" in text, "the trial page tells its story")
    shot(driver, "trial")


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_live(driver, url, store, data, tmp):
    """A coordinator serves a sweep no worker has joined yet; the page is opened on it; then a
    worker group joins and trains. The page must show the trials completing without a reload."""
    spec = os.path.join(tmp, "live.yaml")
    write_spec(spec, "live", data, trials=3, epochs=4, scheduler="")
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    serve = Process([ARGS.trellis, "serve", spec, "--store", store, "--bind", endpoint, "--insecure"],
                    os.path.join(tmp, "serve.log"))
    worker = None
    try:
        driver.get(url + "#/")
        link = wait_for(lambda: driver.find_elements(By.LINK_TEXT, "live"), "the served experiment", 60)
        link[0].click()
        title = wait_for(lambda: driver.find_element(By.ID, "title").text.startswith("live") and
                         driver.find_element(By.ID, "title").text, "the live experiment's page")
        check("completed" not in title, "before any worker: " + title)
        driver.execute_script("window.notReloaded = true")
        worker = Process(["mpirun", "-np", "1", "--bind-to", "none", os.path.join(os.path.dirname(ARGS.trellis),
                          "trellis-worker"), "--connect", endpoint, "--insecure"], os.path.join(tmp, "worker.log"))
        later = wait_for(lambda: "3 completed" in driver.find_element(By.ID, "title").text and
                         driver.find_element(By.ID, "title").text, "the trials to complete on the open page", 120)
        check(driver.execute_script("return window.notReloaded === true && window.trellis.refreshes > 0"),
              "the open page updated itself without a reload: " + later)
        click_row(driver, 0)
        wait_for(lambda: driver.execute_script("return window.trellis.curvesDrawn") == 1, "a live trial's curve")
        shot(driver, "live")
    finally:
        if worker:
            worker.stop()
        serve.stop()


def test_report(driver, store, name, tmp):
    path = os.path.join(ARGS.artifacts, "report.html")
    out = run([ARGS.trellis, "report", name, "-o", path, "--store", store], os.path.join(tmp, "report.log"))
    check("12 trials" in out, "trellis report says what it wrote: " + out.strip())
    driver.get_log("performance")
    driver.get_log("browser")
    driver.get("file://" + path + "#/e/" + name)
    wait_for(lambda: driver.execute_script("return window.trellis.rowsShown") > 0, "the report's table")
    click_row(driver, 0)
    wait_for(lambda: driver.execute_script("return window.trellis.curvesDrawn") == 1, "a curve in the report")
    driver.find_element(By.CSS_SELECTOR, '[data-tab="importance"]').click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#importance tr[data-param]"), "importance in the report")
    shot(driver, "report")
    check_logs(driver, "file://" + path, "the report")


def test_safety(url, port, store, tmp):
    status, _ = http(url + "etc/passwd")
    check(status == 404, "a path outside the routes is 404 (%d)" % status)
    status, _ = http(url + "api/nosuch")
    check(status == 404, "an unknown API route is 404 (%d)" % status)
    status, _ = http(url + "../../etc/passwd")
    check(status in (400, 404), "a climbing path is refused (%d)" % status)
    status, _ = http(url + "api/experiments", method="POST")
    check(status == 404, "POST is 404 (%d)" % status)
    status, _ = http(url + "api/experiments", method="DELETE")
    check(status == 404, "DELETE is 404 (%d)" % status)
    status, _ = http(url + "api/experiments", headers={"Host": "evil.example:%d" % port})
    check(status == 403, "a non-loopback Host header is refused on loopback (%d)" % status)
    status, body = http(url + "api/trials?experiment=nosuch")
    check(status == 404 and "nosuch" in body, "an unknown experiment is 404 and named (%d %s)" % (status, body))

    r = subprocess.run([ARGS.trellis, "dashboard", "--store", store, "--bind", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "--allow-remote" in r.stderr, "a non-loopback bind needs --allow-remote")
    r = subprocess.run([ARGS.trellis, "dashboard", "--store", store, "--bind", "0.0.0.0:0", "--allow-remote"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "token" in r.stderr, "--allow-remote needs a token")

    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write("s3cret-token-0123456789\n")
    p, turl, _ = start_dashboard(store, os.path.join(tmp, "token-dashboard.log"), "--token-file", token_file)
    try:
        check(http(turl + "api/experiments")[0] == 401, "with a token, a request without it is 401")
        check(http(turl + "api/experiments", headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401,
              "a wrong token is 401")
        check(http(turl + "api/experiments", headers={"Authorization": "Bearer s3cret-token-0123456789"})[0] == 200,
              "the right token is 200")
        check(http(turl + "?token=s3cret-token-0123456789")[0] == 200, "the page with ?token= is 200")
    finally:
        p.stop()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--trellis", required=True)
    parser.add_argument("--artifacts", required=True)
    ARGS = parser.parse_args()
    os.makedirs(ARGS.artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="trellis-browser-")
    os.environ["TRELLIS_HOME"] = os.path.join(tmp, "keys")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    os.environ.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    write_dataset(data, 3)
    store = os.path.join(tmp, "store.db")
    spec = os.path.join(tmp, "asha.yaml")
    # Rungs at epochs 3 and 6, half promoted: trials paused, promoted and stopped, and enough
    # completed ones for the importance.
    write_spec(spec, "asha", data, trials=12, epochs=6,
               scheduler="scheduler: {type: asha, min_epochs: 3, reduction_factor: 2}")
    run([ARGS.trellis, "run", spec, "--store", store], os.path.join(tmp, "asha.log"))
    with open(store, "rb") as f:
        before = f.read()

    dash, url, port = start_dashboard(store, os.path.join(tmp, "dashboard.log"))
    driver = None
    try:
        driver = chromium.start(logs=True)
        test_views(driver, url, "asha")
        check_logs(driver, url, "the dashboard")
        test_safety(url, port, store, tmp)
        with open(store, "rb") as f:
            check(f.read() == before, "the dashboard did not write the store")
        test_live(driver, url, store, data, tmp)
        check_logs(driver, url, "the live dashboard")
        test_report(driver, store, "asha", tmp)
    finally:
        if driver:
            driver.quit()
        dash.stop()
    if FAILURES:
        print("%d check(s) failed; logs in %s" % (len(FAILURES), tmp))
        return 1
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
