"""Render built documentation pages in headless Chromium; save screenshots; fail on console errors or broken images.

Usage (after building the docs)::

    python docs/screenshots.py docs/_build/html [--out docs/_build/screenshots] [--page PATH ...]

For each page, a copy with a small probe script is loaded with ``--dump-dom``:
the probe records ``console.error`` calls, uncaught exceptions and failed
resource loads (images, scripts, style sheets) from the first moment, and
after ``load`` writes them, with every ``<img>`` that did not decode, into
the DOM, where this script reads them. The page itself is then screenshotted.
Exit status 1 if any page has a problem, 2 if Chromium is missing.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

DEFAULT_PAGES = ("index.html", "auto_examples/index.html", "auto_examples/plot_fit_two_moons.html")
PROBE = """<script>
(function () {
  var problems = [];
  var original = console.error;
  console.error = function () { problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
                                 original.apply(console, arguments); };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) { problems.push("failed to load: " + (t.src || t.href)); }
    else { problems.push("uncaught: " + e.message); }
  }, true);
  window.addEventListener("unhandledrejection", function (e) { problems.push("unhandled rejection: " + e.reason); });
  window.addEventListener("load", function () {
    setTimeout(function () {
      var images = Array.prototype.slice.call(document.images);
      images.forEach(function (img) {
        if (!img.complete || img.naturalWidth === 0) { problems.push("broken image: " + img.getAttribute("src")); }
      });
      var out = document.createElement("pre");
      out.id = "ebmppl-probe";
      out.textContent = JSON.stringify({images: images.length, problems: problems});
      document.body.appendChild(out);
    }, 500);
  });
})();
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: Chromium not found; install it (apt-get install chromium) and rerun.")


def run_browser(browser: str, *args: str) -> subprocess.CompletedProcess:
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=8000", "--run-all-compositor-stages-before-draw"]
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)


def check_page(browser: str, page: pathlib.Path, shot: pathlib.Path) -> dict:
    html = page.read_text(encoding="utf-8")
    probed = re.sub(r"<head([^>]*)>", lambda m: f"<head{m.group(1)}>{PROBE}", html, count=1)
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=page.parent, prefix=".probe-", delete=False,
                                     encoding="utf-8") as f:
        f.write(probed)
        probe_path = pathlib.Path(f.name)
    try:
        dom = run_browser(browser, "--dump-dom", probe_path.as_uri()).stdout
    finally:
        probe_path.unlink()
    match = re.search(r'<pre id="ebmppl-probe">(.*?)</pre>', dom, re.S)
    if match is None:
        report = {"images": 0, "problems": ["the page did not finish loading (no probe output)"]}
    else:
        report = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                            .replace("&gt;", ">"))
    run_browser(browser, f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri())
    report["screenshot"] = str(shot)
    if not shot.exists() or shot.stat().st_size < 10_000:
        report["problems"].append("no screenshot (or an empty one) was written")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=pathlib.Path, help="the built site, e.g. docs/_build/html")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="screenshot folder (default: <html_dir>/../screenshots)")
    parser.add_argument("--page", action="append", help="page path relative to html_dir (repeatable)")
    args = parser.parse_args(argv)
    root = args.html_dir.resolve()
    if not (root / "index.html").exists():
        print(f"error: {root} has no index.html; build the docs first (see docs/development.md).", file=sys.stderr)
        return 2
    out_dir = (args.out or root.parent / "screenshots").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    failed = False
    for rel in args.page or DEFAULT_PAGES:
        page = root / rel
        if not page.exists():
            print(f"FAIL {rel}: missing", file=sys.stderr)
            failed = True
            continue
        report = check_page(browser, page, out_dir / (rel.removesuffix(".html").replace("/", "_") + ".png"))
        status = "FAIL" if report["problems"] else "ok"
        print(f"{status:4s} {rel}: {report['images']} images, screenshot {report['screenshot']}")
        for problem in report["problems"]:
            print(f"     {problem}")
        failed |= bool(report["problems"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
