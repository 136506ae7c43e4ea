"""Render the HTML report in headless Chromium and measure its opening page.

The page is served from a local HTTP server; a probe script appended to a copy of the
report measures the landing page once it has rendered and sends its findings back to
that server, so nothing beyond Debian's ``chromium`` is needed (no driver, no CDP client).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

# Runs in the page: the boxes of the rule graph and of every table, figure and heading of
# the opening text, where the scrolling content box stands, and the window's width.
PROBE = """<script>
(() => {
  let tries = 0;
  const timer = setInterval(() => {
    const prose = document.querySelector(".prose");
    const graph = document.querySelector("#rulegraph svg, #rulegraph canvas");
    if ((!prose || !graph) && ++tries < 40) return;
    clearInterval(timer);
    const box = (element) => { const r = element.getBoundingClientRect();
      return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
    const scroller = document.querySelector("div.grow.h-screen.overflow-auto");
    const found = {
      width: window.innerWidth,
      scrollTop: scroller ? scroller.scrollTop : null,
      graph: graph ? box(graph) : null,
      heading: prose ? box(prose.querySelector("h1, h2")) : null,
      items: prose ? [...prose.querySelectorAll("table, img")].map((element) => ({
        kind: element.tagName.toLowerCase(), classes: element.className, box: box(element),
        visible: box(element.parentElement.closest(".tokenprune-wide") || element)})) : [],
    };
    fetch("/probe", {method: "POST", body: JSON.stringify(found)});
  }, 250);
})();
</script>"""


def chromium() -> str | None:
    """Debian's chromium, installed with apt where this runs as root and it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(install, capture_output=True)
    return shutil.which("chromium")


def measure_opening_page(browser: str, report: Path, width: int, height: int = 900) -> dict:
    """What :data:`PROBE` finds on the report's opening page in a ``width`` × ``height`` window."""
    html = report.read_text(encoding="utf-8")
    end = html.rindex("</body>")
    served = report.with_name("probed.html")
    served.write_text(html[:end] + PROBE + html[end:], encoding="utf-8")
    findings: list[dict] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            findings.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=report.parent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{urllib.parse.quote(served.name)}"
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                "--virtual-time-budget=15000",
                f"--screenshot={report.with_name(f'opening-{width}.png')}",
                url,
            ],
            capture_output=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert findings, f"the probe reported nothing at {width} px; is the report's app rendering?"
    return findings[-1]


def overlaps(a: dict, b: dict) -> bool:
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]
