"""The inspection report as a user gets it: written by the command, opened in a real headless
Chromium (no console errors, every thumbnail loaded, the filter box works, a screenshot kept),
thumbnails from the train shards, and bad input refused with one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from text_mining.inspect import inspect

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600")


@pytest.fixture(scope="module")
def report(example_v1, mined_v1, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inspect") / "report"
    summary = inspect(mined_v1, example_v1, out, per_class=4, seed=1)
    assert summary["thumbnails"] > 0 and summary["thumbnails_missing"] == 0
    return out


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _visible_classes(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('section.cls')].filter(s => s.offsetParent !== null)"
        ".map(s => s.dataset.name)")


def test_report_in_headless_chromium(report, browser, tmp_path):
    from selenium.webdriver.common.by import By
    browser.get((report / "index.html").as_uri())
    browser.execute_script("document.querySelectorAll('.kwgrid').forEach(g => g.classList.remove('hidden'))")
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.complete ? 1 : new Promise(r => {i.onload = i.onerror = r;})))"
        ".then(() => done(1));")
    images = browser.execute_script(
        "return [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
    thumbs = [src for src, _ok in images if src.startswith("thumbs/")]
    assert len(thumbs) > 10 and any(src.startswith("plots/") for src, _ok in images)
    assert [src for src, ok in images if not ok] == [], "images that did not load"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors

    all_classes = _visible_classes(browser)
    assert len(all_classes) == 8
    box = browser.find_element(By.ID, "filter")
    box.send_keys(all_classes[3])
    shown = _visible_classes(browser)
    assert all_classes[3] in shown and len(shown) < len(all_classes)
    assert all(all_classes[3].lower() in name.lower() for name in shown)
    browser.execute_script("document.querySelectorAll('.kwgrid').forEach(g => g.classList.add('hidden'))")
    box.clear()
    box.send_keys(browser.execute_script("return document.querySelectorAll('section.cls')[5].dataset.wnid"))
    assert _visible_classes(browser) == [all_classes[5]]
    box.clear()
    box.send_keys(" ")   # an input event with an empty query shows everything again
    assert _visible_classes(browser) == all_classes

    keep = Path(os.environ.get("WEBTAG_ARTIFACTS", tmp_path))
    keep.mkdir(parents=True, exist_ok=True)
    shot = keep / "inspect-report.png"
    browser.set_window_size(1280, 1000)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_report_files(report):
    csv = (report / "classes.csv").read_text().splitlines()
    assert csv[0].startswith("class_id,wnid,name,images,estimated_noise") and len(csv) == 9
    page = (report / "index.html").read_text()
    assert "http://" not in page.split("<body>")[0] and "<script src" not in page and "<link" not in page
    assert sorted(p.name for p in (report / "plots").iterdir()) == ["classes.png", "keywords.png", "weights.png"]


def test_thumbnails_from_shards_without_the_release(mined_v1, shards_v1, report, tmp_path):
    out = tmp_path / "from-shards"
    summary = inspect(mined_v1, None, out, shards=shards_v1, per_class=4, seed=1)
    assert summary["thumbnails_missing"] == 0
    # the same sample, the same thumbnails' names as from the release's files
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == sorted(p.name for p in (report / "thumbs").iterdir())


def test_unfinished_labels_refused_with_one_line(example_v1, tmp_path):
    (tmp_path / "mined").mkdir()
    proc = subprocess.run([sys.executable, "-m", "text_mining", "inspect", "--labels", str(tmp_path / "mined"),
                           "--webvision", str(example_v1), "--out", str(tmp_path / "report")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "complete.json is missing" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "report").exists()


def test_excerpts_are_the_readers_texts(example_v1, mined_v1):
    from text_mining.inspect import excerpts
    from text_mining.problems import Problems
    from text_mining.webvision import Release
    release = Release(example_v1)
    reference = {r.index: " | ".join(x for x in (r.title, r.description) if x)
                 for r in release.iter_records(0, release.total, Problems())}
    wanted = list(range(release.total - 1, 0, -5))
    got = excerpts(example_v1, mined_v1, wanted)
    assert sorted(got) == sorted(wanted) and all(got[i] == reference[i] for i in wanted)
    assert any(got.values())


def test_text_mining_opens_no_image_code():
    code = ("import sys, text_mining.inspect, text_mining.inspect_stats, text_mining.inspect_html, text_mining.__main__;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'PIL', 'pipeline', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
