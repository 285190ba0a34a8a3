"""Headless Chromium for the dashboard's test and benchmark, kept off the network.

The flags are those of ../shared/browser-test-notes.md: no background networking, component
updates, sync or DNS prefetch, and a resolver that knows only loopback, so a request to any
other host fails and shows in the browser's log.
"""

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--no-first-run", "--disable-domain-reliability",
         "--dns-prefetch-disable", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--disable-dev-shm-usage"]


def start(logs=False):
    """A Chrome session; with `logs`, the console and network events are kept for get_log."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    if logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                            options=options)
