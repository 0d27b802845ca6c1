"""``report.html`` opened in a real browser (headless Chromium, Debian's ``chromium`` package, which ``.ci/run``
installs): the plot renders one point per trial that ran (trivial trials in their own trace) on both axes, the log
axes read as plain numbers, and no marker label is cut off at the page's edge. Skips, saying why, only where no
Chromium can be had."""
from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROBE = """<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var points = {}, ticks = [], clipped = [];
    document.querySelectorAll('.scatterlayer .trace').forEach(function (g) {
      var t = g.__data__ && g.__data__[0] && g.__data__[0].trace;
      if (!t) return;
      var key = t.name + '|' + (t.xaxis || 'x');
      points[key] = (points[key] || 0) + g.querySelectorAll('path.point').length;
    });
    document.querySelectorAll('.xtick text').forEach(function (t) { ticks.push(t.textContent); });
    var page = document.querySelector('svg.main-svg').getBoundingClientRect();
    document.querySelectorAll('.textpoint text').forEach(function (t) {
      var r = t.getBoundingClientRect();
      if (r.left < page.left || r.right > page.right || r.top < page.top) clipped.push(t.textContent);
    });
    document.body.setAttribute('data-probe', JSON.stringify({points: points, ticks: ticks, clipped: clipped}));
  }, 500);
});
</script></body>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    return found


def rendered(page: Path, tmp_path: Path) -> dict:
    """What the probe read from the page after Chromium ran its scripts (``--dump-dom``)."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE))
    proc = subprocess.Popen([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        dom, _ = proc.communicate(timeout=120)
    finally:  # this test's browser and its helpers only (its own process group)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    found = dom.split('data-probe="', 1)
    assert len(found) == 2, "the probe found no rendered plot:\n" + dom[-2000:]
    return json.loads(html.unescape(found[1].split('"', 1)[0]))


def test_report_html_renders_one_point_per_trial_in_chromium(tmp_path):
    from analysis.interactive import TRACE_TRIALS, log_ticks, write_html
    from search.pareto import TRIVIAL, pareto_front

    rng = np.random.default_rng(0)
    n = 9
    trials = pd.DataFrame({"trial_id": [f"t{i}" for i in range(n)], "status": ["completed"] * (n - 1) + ["error"],
                           "int8_val_weighted_f1": rng.uniform(0.5, 0.7, n), "e2e_ms_p50": rng.uniform(0.3, 0.9, n),
                           "size_mib": rng.uniform(1, 5, n), TRIVIAL: [False] * 6 + [True, False, False]})
    refs = [{"name": "teacher (fp32)", "val_weighted_f1": 0.72, "test_weighted_f1": 0.75, "e2e_ms_p50": 23.5,
             "size_mib": 111.8},
            {"name": "TF-IDF + LinearSVC", "val_weighted_f1": 0.66, "test_weighted_f1": 0.73, "e2e_ms_p50": 2.1,
             "size_mib": 15.5}]
    write_html(trials, pareto_front(trials), refs, tmp_path)
    got = rendered(tmp_path / "report.html", tmp_path)
    points = got["points"]
    trivial = "trivial: no better than the majority/prior (off the front)"
    for axis in ("x", "x2"):  # latency, size: each trial that ran is one point, the failed one none
        assert points[f"{TRACE_TRIALS}|{axis}"] == 7 and points[f"{trivial}|{axis}"] == 1, points
        assert points[f"teacher (fp32)|{axis}"] == 1 and points[f"TF-IDF + LinearSVC|{axis}"] == 1, points
    # the latency axis reads as plain numbers: 0.3, 0.5, 1, 2, ... (not plotly's "3 4 5 ... 9" for 0.3-0.9)
    lat = [*trials.e2e_ms_p50[trials.status != "error"], *(r["e2e_ms_p50"] for r in refs)]
    assert got["ticks"] == [f"{v:g}" for v in log_ticks(lat)], got["ticks"]
    assert {"0.3", "0.5", "1", "2", "5", "10", "20"} <= set(got["ticks"]), got["ticks"]
    assert got["clipped"] == [], got["clipped"]
