"""report.html looked at in a real browser: headless Debian Chromium renders the report of a real `edgeport run`
and the page must have every plot decoded (non-zero natural size), its tables, and make no network request.

Chromium is a CI requirement (.ci/browser_deps.sh installs it): if it is missing these tests FAIL, never skip."""
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NAME = "shufflenet_v2_cifar_x0_5"
CKPT = ROOT / "calibration" / "checkpoints" / f"{NAME}_digits.pt"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]
PLOTS = ("latency", "tradeoff", "layers", "ops")


def chromium() -> str:
    for name in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if name and os.access(name, os.X_OK):
            return name
    pytest.fail("headless Chromium is required for the browser tests: run `bash .ci/browser_deps.sh` "
                "(Debian package `chromium`)")


def render_page(url: str, tmp: Path, *, screenshot: Path | None = None, width: int = 1280,
                height: int = 5200) -> tuple[str, list[dict]]:
    """(DOM after load, requests the page itself started) from one headless Chromium run with a net log."""
    tmp.mkdir(parents=True, exist_ok=True)
    netlog = tmp / "net.json"
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
           f"--window-size={width},{height}"]
    cmd += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    r = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout, page_requests(netlog)


def page_requests(netlog: Path) -> list[dict]:
    """URL requests initiated by a page (Chromium's own update/account pings have initiator 'not an origin')."""
    data = json.loads(netlog.read_text())
    types = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    out = []
    for e in data["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and p.get("url") and p.get("initiator") != "not an origin":
            out.append({"url": p.get("url"), "initiator": p.get("initiator")})
    return out


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.body, self.imgs, self.tables, self.links = {}, [], [], []
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "table":
            self._table = {"id": a.get("id"), "rows": 0, "th": []}
            self.tables.append(self._table)
        elif tag == "tr" and self._table is not None:
            self._table["rows"] += 1
        for k in ("src", "href", "action", "poster"):
            if a.get(k):
                self.links.append(a[k])


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "out"
    r = subprocess.run([sys.executable, "-m", "edgeport.cli", "run", NAME, "--checkpoint", str(CKPT),
                        "--calibration", "digits", "--num-validation", "64", "--runs", "5", "--warmup", "1",
                        "--out", str(out)], capture_output=True, text=True, timeout=900,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_report_renders_with_every_plot_and_table_and_no_request(report_dir, tmp_path):
    dom_text, requests = render_page((report_dir / "report.html").as_uri(), tmp_path / "dom")
    dom = Dom()
    dom.feed(dom_text)
    # every plot decoded by the browser with a real size (set by the page's load handler from naturalWidth)
    assert dom.body.get("data-plots-total") == str(len(PLOTS)) and dom.body.get("data-plots-loaded") == str(len(PLOTS))
    plots = {i["id"]: i for i in dom.imgs if "plot" in (i.get("class") or "")}
    assert set(plots) == {f"plot-{p}" for p in PLOTS}
    for pid, img in plots.items():
        assert img["src"].startswith("data:image/png;base64,"), pid
        assert img.get("data-decoded") == "yes", pid
        assert int(img["data-natural-width"]) > 300 and int(img["data-natural-height"]) > 200, (pid, img)
    # the tables
    ids = {t["id"]: t for t in dom.tables}
    for tid in ("table-summary", "table-parity-vs-torch", "table-latency", "table-ops", "table-worst-int8-layers",
                "table-steps"):
        assert tid in ids and ids[tid]["rows"] >= 2, (tid, sorted(ids))
    assert ids["table-summary"]["rows"] == 1 + 4  # header + four artifacts
    assert any(t.startswith("table-accuracy") for t in ids)
    xnn = next(t for t in ids if t.startswith("table-xnnpack"))  # one row per TFLite artifact
    assert ids[xnn]["rows"] == 1 + 2, (xnn, ids[xnn])
    # self-contained: no external reference in the DOM, no request made by the page
    assert all(u.startswith(("data:", "#")) for u in dom.links), dom.links
    assert "url(http" not in dom_text
    assert requests == [], requests
    assert not (report_dir / "layers_sqnr.png").exists()  # `run` draws report_layers.png only (issue 20 item 18)


def test_a_missed_threshold_shows_the_failure_banner(report_dir, tmp_path):
    """A real threshold miss (validate with a stricter SQNR bound than tflite_int8 reaches) fills the red banner at
    the top of the page, above the recommendation, naming the artifact, the metric and the bound; the passing
    report (above) has no banner."""
    from edgeport.cli import main
    from edgeport.render import render

    d = tmp_path / "failing"
    shutil.copytree(report_dir, d)
    assert main(["--quiet", "validate", str(d), "--num-validation", "16", "--threshold",
                 "tflite_int8.sqnr_db=99"]) == 1
    render(d)
    dom_text, _ = render_page((d / "report.html").as_uri(), tmp_path / "fail")
    assert "id=\"failures\"" in dom_text and dom_text.index("id=\"failures\"") < dom_text.index("id=\"recommendation\"")
    banner = dom_text[dom_text.index("id=\"failures\""):dom_text.index("</div>", dom_text.index("id=\"failures\""))]
    assert "check tflite_int8" in banner and "sqnr_db" in banner and "needs 99" in banner
    shot = tmp_path / "fail.png"
    render_page((d / "report.html").as_uri(), tmp_path / "failshot", screenshot=shot, height=900)
    import matplotlib.image
    import numpy as np

    rgb = matplotlib.image.imread(str(shot))[..., :3]
    pink = (np.abs(rgb - np.array([0xFD, 0xEC, 0xEA]) / 255).max(axis=-1) < 0.02).sum()  # the banner's fill
    assert pink > 5000, pink
    ok_text, _ = render_page((report_dir / "report.html").as_uri(), tmp_path / "ok")
    assert "id=\"failures\"" not in ok_text


def test_network_check_catches_an_external_image(tmp_path):
    """The request check above is not vacuous: a page with one external image is caught."""
    page = tmp_path / "ext.html"
    page.write_text("<!doctype html><html><body><img src='http://127.0.0.1:9/x.png'></body></html>")
    _, requests = render_page(page.as_uri(), tmp_path / "ext")
    assert [r["url"] for r in requests] == ["http://127.0.0.1:9/x.png"]


def test_screenshot_of_the_report(report_dir, tmp_path):
    """The top of the page as a reader sees it (summary table, latency bars, trade-off plot): mostly white, with
    the tflite_int8 bars' green actually painted. Look at it: docs/img/report_example.png is such a screenshot."""
    import matplotlib.image
    import numpy as np

    shot = tmp_path / "report.png"
    render_page((report_dir / "report.html").as_uri(), tmp_path / "shot", screenshot=shot, height=2000)
    img = matplotlib.image.imread(str(shot))
    assert img.shape[:2] == (2000, 1280)
    rgb = img[..., :3]
    white = (rgb > 0.97).all(axis=-1).mean()
    colour = ((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).mean()
    solid = np.array([0x54, 0xA2, 0x4B]) / 255  # tflite_int8's colour; its bar is faded (alpha 0.45) when noisy
    green = sum((np.abs(rgb - c).max(axis=-1) < 0.06).sum() for c in (solid, 0.45 * solid + 0.55))
    assert 0.5 < white < 0.97 and colour > 0.003 and green > 200, (white, colour, green)
    if os.environ.get("EDGEPORT_SAVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["EDGEPORT_SAVE_SCREENSHOT"])
