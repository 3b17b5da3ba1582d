"""Open the HTML report in headless Chromium: every figure loads, the console shows no error.

Skipped when no Chromium is installed (CI: `apt-get install -y chromium`). A screenshot of the report is
kept in test-artifacts/report.png (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from _fake_study import make_study
from poolstride.report import write_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Injected into a test copy of the page: records load errors and console.error calls, then, on window
# load, writes {images, loaded, errors} into <pre id="ps-check"> for --dump-dom to expose.
PROBE = """<script>
(function () {
  var errs = [];
  window.addEventListener('error', function (e) {
    var t = e.target && e.target.tagName ? e.target.tagName + ' failed to load' : '';
    errs.push('error: ' + (e.message || t || 'unknown'));
  }, true);
  var ce = console.error;
  console.error = function () {
    errs.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    ce.apply(console, arguments);
  };
  window.addEventListener('load', function () {
    var im = document.images, ok = 0;
    for (var i = 0; i < im.length; i++) { if (im[i].complete && im[i].naturalWidth > 0) ok++; }
    var p = document.createElement('pre');
    p.id = 'ps-check';
    p.textContent = JSON.stringify({images: im.length, loaded: ok, errors: errs});
    document.body.appendChild(p);
  });
})();
</script>"""


def _browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    env = dict(os.environ, HOME=str(profile))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)


@pytest.mark.skipif(_browser() is None, reason="no chromium installed (apt-get install -y chromium)")
def test_report_opens_in_chromium(tmp_path: Path) -> None:
    browser = _browser()
    assert browser is not None
    study = make_study(tmp_path / "study", sites=True, erf=True)
    index = write_report(study)
    n_figures = len(json.loads((index.parent / "report.json").read_text())["figures"])
    assert n_figures == 6

    # Test copy with the probe; the report's CSP forbids scripts, so allow inline ones in the copy only.
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html
    probe_html = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';", 1)
    probe_html = probe_html.replace("<head>", "<head>" + PROBE, 1)
    probe = index.parent / "probe.html"
    probe.write_text(probe_html, encoding="utf-8")

    r = _run(browser, tmp_path / "profile1", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r'<pre id="ps-check">(.*?)</pre>', r.stdout, re.S)
    assert m, f"probe did not run (rc={r.returncode}); stderr tail:\n{r.stderr[-2000:]}"
    result = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == [], result
    assert result["images"] == n_figures and result["loaded"] == n_figures, result
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    r = _run(browser, tmp_path / "profile2", "--window-size=1280,4000", f"--screenshot={shot}", index.as_uri())
    assert shot.exists(), f"no screenshot (rc={r.returncode}); stderr tail:\n{r.stderr[-2000:]}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
