#!/usr/bin/python3
"""The dashboard's figures at scale, in headless Chromium (called by bench_dashboard).

Each repetition starts a fresh `trellis dashboard` (so no answer is cached in the server) and a
fresh page, then measures, in the page's own clock (performance.now, the Performance API):
  first_rows_ms   navigation start to the frame that paints the trials table's first rows
                  (the page's 'trials-painted' mark: the frame after the rows are in the DOM);
  sort_ms         a click on a column header to the next painted frame (sort of every trial and
                  the visible rows rebuilt), each repetition a different column;
  curves_ms       "overlay best 1000": the fetch of 1,000 trials' curves, the chart built and
                  drawn, to the next painted frame.
The repetitions interleave the three; the median and the range are printed, the last line is
JSON. Goals (issue 11): first rows < 1000 ms, sort < 300 ms, 1,000 curves < 1000 ms.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "dashboard"))
import chromium  # noqa: E402  (the test's off-network Chromium)

def browser():
    driver = chromium.start()
    driver.set_script_timeout(120)
    return driver


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit("bench: timed out waiting for " + what)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trellis", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--experiment", required=True)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()

    sort_columns = ["params.lr", "final.val_acc", "params.optimizer", "params.hidden_units",
                    "final.test_acc", "params.dropout", "epochs", "params.weight_decay"]
    first, sort, curves = [], [], []
    driver = browser()
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    try:
        for rep in range(args.reps):
            server = subprocess.Popen([args.trellis, "dashboard", "--store", args.store, "--bind",
                                       "127.0.0.1:0"], stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
            try:
                url = re.search(r"(http://127\.0\.0\.1:\d+/)", server.stdout.readline()).group(1)
                driver.get("about:blank")
                driver.get(url + "#/e/" + args.experiment)
                wait_for(lambda: driver.execute_script("return window.trellis && window.trellis.rowsShown > 0"),
                         "the trials table")
                painted = wait_for(lambda: driver.execute_script(
                    "const m = performance.getEntriesByName('trials-painted')[0]; return m && m.startTime"),
                    "the first rows painted")
                count = driver.execute_script("return document.getElementById('title').textContent")
                first.append(painted)

                col = sort_columns[rep % len(sort_columns)]
                ms = driver.execute_async_script("""
                    const done = arguments[arguments.length - 1];
                    const t0 = performance.now();
                    document.querySelector('th[data-col="' + arguments[0] + '"]').click();
                    requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
                """, col)
                sort.append(ms)

                ms = driver.execute_async_script("""
                    const done = arguments[arguments.length - 1];
                    const t0 = performance.now();
                    window.trellis.overlayBest(1000);
                    (function wait() {
                      if (window.trellis.curvesDrawn === 1000)
                        requestAnimationFrame(() => setTimeout(() => done(performance.now() - t0), 0));
                      else setTimeout(wait, 1);
                    })();
                """)
                curves.append(ms)
                print("rep %d: first rows %.0f ms, sort by %s %.0f ms, 1000 curves %.0f ms  (%s)" %
                      (rep + 1, first[-1], col, sort[-1], curves[-1], count), flush=True)
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(20)
    finally:
        driver.quit()

    def summary(xs):
        return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
                "max": round(max(xs), 1), "n": len(xs)}

    result = {
        "trials": int(re.search(r"(\d+) trials", count).group(1)),
        "cpu": model.group(1) if model else "unknown",
        "browser": driver.capabilities.get("browserVersion", "?"),
        "first_rows_ms": summary(first),
        "sort_ms": summary(sort),
        "curves_1000_ms": summary(curves),
        "goals_ms": {"first_rows": 1000, "sort": 300, "curves_1000": 1000},
        "ratio_to_goal": {
            "first_rows": round(statistics.median(first) / 1000, 3),
            "sort": round(statistics.median(sort) / 300, 3),
            "curves_1000": round(statistics.median(curves) / 1000, 3),
        },
    }
    print("%-14s %8s %8s %8s %6s" % ("", "median", "min", "max", "goal"))
    for key, goal in (("first_rows_ms", 1000), ("sort_ms", 300), ("curves_1000_ms", 1000)):
        s = result[key]
        print("%-14s %8.1f %8.1f %8.1f %6d" % (key, s["median"], s["min"], s["max"], goal))
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
