"""The fleet's web page in real headless Chromium (Debian `chromium` + `chromium-driver`, driven
by selenium with explicit binary paths): log in with the admin token, read the overview, open an
entry, download its CSV with the session cookie; the screenshot is kept as a test artifact. The
fleet's data come from `appban fleet import` of the recorded Intune and generic MDM exports in
tests/fixtures/mdm (formats documented in tests/fixtures/mdm/README.md)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, require_tool
from tests.fleet_support import ADMIN_TOKEN, FleetServer, cli, write_fleet_config

pytestmark = pytest.mark.slow

MDM = REPO / "tests" / "fixtures" / "mdm"
ARTIFACTS = Path(os.environ.get("APPBAN_TEST_ARTIFACTS", REPO / "test-artifacts"))
PHONE_LIST = """\
format: appban.banlist/v1
serial: 12
issued: 2026-11-01T00:00:00Z
entries:
  - id: tiktok
    name: TikTok
    match: {android: [com.zhiliaoapp.musically, com.ss.android.ugc.trill], ios: [com.zhiliaoapp.musically]}
  - id: wechat
    name: WeChat
    applies_to: [ministers]
    advisory_for: [assembly]
    match: {android: [com.tencent.mm], ios: [com.tencent.xin]}
"""
RULES = [{"groups": ["ministers"], "attributes": {"department": ["cabinet"]}},
         {"groups": ["assembly"], "attributes": {"email_domain": ["assnat.qc.ca"]}}]


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1366,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=require_tool("chromedriver")), options=options)


def test_import_then_browse_log_in_entry_and_csv(tmp_path: Path) -> None:
    config = write_fleet_config(tmp_path / "fleet", banlist=PHONE_LIST, groups=RULES)
    imported = cli("fleet", "import", str(MDM / "intune-appinvrawdata.zip"), str(MDM / "generic.csv"),
                   "--config", str(config))
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "imported 5 devices from 2 file(s)\n"
    status = json.loads(cli("fleet", "status", "--config", str(config), "--format", "json").stdout)
    entries = {e["entry"]: e for e in status["entries"]}
    assert entries["tiktok"]["violation"] == 4
    assert (entries["wechat"]["violation"], entries["wechat"]["advisory"]) == (1, 1)
    assert status["banlist_serials"] == {}  # MDM devices run no agent: no serial to drift

    from selenium.webdriver.common.by import By

    fleet = FleetServer(config)
    browser = chromium()
    try:
        browser.get(f"{fleet.url}/")
        assert browser.current_url.endswith("/login")
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "login").click()
        assert browser.find_element(By.ID, "error").text == "wrong token"
        browser.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        browser.find_element(By.ID, "login").click()
        assert browser.current_url == f"{fleet.url}/"
        assert browser.find_element(By.ID, "total").text == "5"
        assert browser.find_element(By.ID, "noncompliant").text == "5"
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#entries tr")]
        assert rows[1].split() == ["tiktok", "4", "0", "0", "0"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "fleet-overview.png"))
        cookie, = browser.get_cookies()
        assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

        browser.find_element(By.LINK_TEXT, "tiktok").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "Entry tiktok"
        devices = {r.text.split()[0] for r in browser.find_elements(By.CSS_SELECTOR, "#findings tr")[1:]}
        assert devices == {"1f2e3d4c-5b6a-4978-8899-aabbccddeeff", "6b1c0f5e-1d2a-4c3b-9e8f-0a1b2c3d4e5f",
                           "77aa88bb-99cc-4ddd-8eee-ffff00001111", "R58M31ABCDE"}
        assert browser.save_screenshot(str(ARTIFACTS / "fleet-entry.png"))
        link = browser.find_element(By.ID, "csv").get_attribute("href")
        download = requests.get(link, cookies={cookie["name"]: cookie["value"]}, timeout=30)
        assert download.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(download.text)))
        assert {r["device"] for r in table} == devices and {r["entry"] for r in table} == {"tiktok"}
        assert requests.get(link, timeout=30).url.endswith("/login")  # no cookie, no data

        browser.find_element(By.LINK_TEXT, "R58M31ABCDE").click()
        assert "appeared" in browser.find_element(By.ID, "history").text
        browser.find_element(By.CSS_SELECTOR, "header button").click()  # log out
        browser.get(f"{fleet.url}/")
        assert browser.current_url.endswith("/login")
    finally:
        browser.quit()
        fleet.stop()
