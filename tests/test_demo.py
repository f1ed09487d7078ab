"""`ase-mllm demo` end to end: a real daemon started by the demo, sidecars and the HTML report, whose summary
table is read back from the HTML and sorted in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import html
import json
import re
import shutil
import string
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from ase_daemon.client import Client
from ase_daemon.xmp import read_sidecar
from conftest import daemon_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (./install.sh --test installs it)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, tiny_model_dir):
    """One demo run (the daemon it starts uses the tiny model): (out folder, its stdout, the command, its env)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = daemon_env(tmp_path)
    env["ASE_MODEL"] = str(tiny_model_dir)  # the daemon the demo starts uses it as its default model
    endpoint = f"ipc://{tmp_path}/demo.sock"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ase_daemon.mllm_cli", "demo", "--out", str(out), "--endpoint", endpoint]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        yield out, r.stdout, cmd, env
    finally:
        try:
            with Client(endpoint, timeout=5, retries=0) as c:
                c.shutdown()
        except Exception:
            pass


class SummaryTable(HTMLParser):
    """The report's summary table as data: header keys, and per body row its name and cells (class, data-sort,
    text, img src)."""

    def __init__(self, page: str):
        super().__init__()
        self.keys, self.rows, self._in, self._cell = [], [], None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "summary":
            self._in = "table"
        elif self._in is None:
            return
        elif tag == "th" and "data-key" in a:
            self.keys.append(a["data-key"])
        elif tag == "tr" and "data-name" in a:
            self.rows.append({"name": a["data-name"], "cells": []})
        elif tag == "td" and self.rows:
            self._cell = {"class": a.get("class", ""), "sort": a.get("data-sort"), "text": "", "img": None}
            self.rows[-1]["cells"].append(self._cell)
        elif tag == "img" and self._cell is not None:
            self._cell["img"] = a.get("src")

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def cell(row: dict, cls: str) -> dict:
    return next(c for c in row["cells"] if cls in c["class"].split())


def test_demo_writes_report_and_sidecars(demo):
    out, stdout, cmd, env = demo
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) >= 6
    page = (out / "report.html").read_text()
    for row in rows:
        photo = out / row["photo"]
        assert photo.exists() and row["name"] in page
        assert (out / row["overlay"]).exists() and row["overlay"] in page
        assert (out / row["thumb"]).exists() and row["thumb"] in page
        sidecar = read_sidecar(photo)
        # XML cannot carry C0 control characters: the writer turns them into spaces (the tiny model's
        # random text has some)
        assert sidecar["text"] == re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f]", " ", row["result"]["text"])
        assert abs(sidecar["score"] - row["result"]["score"]) < 0.01
    assert "Open the report" in stdout and "ase-viewer" in stdout
    # a second run reuses the running daemon (and its stored critiques)
    r2 = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r2.returncode == 0, r2.stderr
    assert "starting ase-daemon" not in r2.stdout + r2.stderr


def test_report_summary_table(demo):
    """The table comes first, one row per photo, best first; its scores, stars and remarks are the critiques'."""
    from ase_daemon.xmp import rating_from_score

    from ase_model.remarks import main_remark

    out = demo[0]
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())}
    page = (out / "report.html").read_text()
    assert page.index('id=summary') < page.index("class=card")  # the summary before the cards
    table = SummaryTable(page)
    assert table.keys == ["name", "score", "stars", "remark"]
    assert sorted(r["name"] for r in table.rows) == sorted(rows)
    scores = []
    for tr in table.rows:
        result = rows[tr["name"]]["result"]
        score = cell(tr, "num")
        assert float(score["sort"]) == pytest.approx(result["score"], abs=5e-4)
        assert float(score["text"]) == pytest.approx(result["score"], abs=0.051)
        stars = cell(tr, "stars")
        assert int(stars["sort"]) == rating_from_score(result["score"]) == stars["text"].count("★")
        assert html.unescape(cell(tr, "remark")["text"]) == main_remark(result)
        assert cell(tr, "thumb")["img"] == rows[tr["name"]]["thumb"]
        scores.append(result["score"])
    assert scores == sorted(scores, reverse=True)


def test_report_heat_legend(demo):
    """The heat overlay's legend: a colour bar from the overlay's own colormap, ticks, what low and high mean."""
    from ase_model.overlay import heat_legend

    page = (demo[0] / "report.html").read_text()
    lg = heat_legend()
    legend = page[page.index('<div class="legend"'):page.index("<table")]
    assert "linear-gradient" in legend and all(colour in legend for _, colour in lg["stops"])
    assert all(f">{html.escape(t)}<" in legend for _, t in lg["ticks"]) and "peak" in legend
    assert html.escape(lg["low"]) in legend and html.escape(lg["high"]) in legend
    assert page.count('<div class="legend"') == 1 + page.count("class=card")  # and one under each card's overlay


@needs_chromium
def test_report_sorts_in_a_browser(demo, tmp_path):
    """Header clicks in headless chromium run the page's own script: each column sorts, a second click reverses."""
    out = demo[0]
    page = (out / "report.html").read_text()
    table = SummaryTable(page)
    score = {tr["name"]: float(cell(tr, "num")["sort"]) for tr in table.rows}
    stars = {tr["name"]: int(cell(tr, "stars")["sort"]) for tr in table.rows}
    remark = {tr["name"]: html.unescape(cell(tr, "remark")["sort"]) for tr in table.rows}
    # the test's script runs after the page's (same document): it clicks the headers' buttons and records the order
    probe = """<script>
const order = () => [...document.querySelectorAll("#summary tbody tr")].map((tr) => tr.dataset.name);
const click = (key) => document.querySelector(`#summary th[data-key=${key}] button`).click();
const seen = {initial: order()};
for (const [label, key] of [["score1", "score"], ["score2", "score"], ["name1", "name"], ["name2", "name"],
                            ["stars1", "stars"], ["remark1", "remark"]]) {
  click(key);
  seen[label] = order();
  seen[label + "_sort"] = document.querySelector(`#summary th[data-key=${key}]`).getAttribute("aria-sort");
}
const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(seen);
document.body.append(pre);
</script>"""
    probe_page = out / "report-probe.html"  # beside the report, so its relative links still resolve
    probe_page.write_text(page + probe, encoding="utf-8")
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + str(tmp_path),
                        "--dump-dom", probe_page.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert found, r.stdout[-2000:] + r.stderr[-2000:]
    seen = json.loads(html.unescape(found.group(1)))
    names = list(score)
    assert sorted(seen["initial"]) == sorted(names) and len(seen["initial"]) == len(table.rows)
    assert [score[n] for n in seen["initial"]] == sorted(score.values(), reverse=True)  # best first
    assert [score[n] for n in seen["score1"]] == sorted(score.values()) and seen["score1_sort"] == "ascending"
    assert [score[n] for n in seen["score2"]] == sorted(score.values(), reverse=True)
    assert seen["score2_sort"] == "descending"
    assert seen["name1"] == sorted(names) and seen["name1_sort"] == "ascending"  # the demo's names: no digits
    assert seen["name2"] == sorted(names, reverse=True) and seen["name2_sort"] == "descending"
    assert [stars[n] for n in seen["stars1"]] == sorted(stars.values(), reverse=True)  # numbers: most first
    keys = [remark[n].lower() for n in seen["remark1"]]
    assert sorted(seen["remark1"]) == sorted(names) and seen["remark1_sort"] == "ascending"
    # the collator ignores case and weighs punctuation unlike Python: compare the ASCII first letters
    firsts = [k[:1] for k in keys if k[:1] in string.ascii_lowercase]
    assert firsts == sorted(firsts)
