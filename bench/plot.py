"""Plot live delivery p50/p99 against the number of subscribers from `bench.live`'s output
(one JSON object per line), as a PNG: an SVG chart rendered by the system Chromium (the same
one the browser tests use; no plotting library).

    uv run python -m bench.live --subscribers 1000,2000,4000,8000,16000 > sweep.jsonl
    uv run python -m bench.plot sweep.jsonl bench/live-latency.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
from pathlib import Path

from playwright.async_api import async_playwright

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 30, 40, 60


def svg(runs: list[dict[str, object]], title: str) -> str:
    counts = [int(r["subscribers"]) for r in runs]  # type: ignore[call-overload]
    p50 = [float(r["deliveryMs"]["p50"]) for r in runs]  # type: ignore[index]
    p99 = [float(r["deliveryMs"]["p99"]) for r in runs]  # type: ignore[index]
    top = max(max(p99) * 1.15, 10.0)
    lo, hi = math.log2(min(counts)), math.log2(max(counts))

    def x(count: int) -> float:
        span = (hi - lo) or 1
        return LEFT + (math.log2(count) - lo) / span * (WIDTH - LEFT - RIGHT)

    def y(ms: float) -> float:
        return HEIGHT - BOTTOM - ms / top * (HEIGHT - TOP - BOTTOM)

    def line(values: list[float], colour: str, name: str) -> str:
        points = " ".join(f"{x(c):.1f},{y(v):.1f}" for c, v in zip(counts, values, strict=True))
        dots = "".join(
            f'<circle cx="{x(c):.1f}" cy="{y(v):.1f}" r="4" fill="{colour}"/>'
            f'<text x="{x(c):.1f}" y="{y(v) - 9:.1f}" text-anchor="middle" font-size="11">'
            f"{v:.0f}</text>"
            for c, v in zip(counts, values, strict=True)
        )
        return f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>{dots}'

    ticks = "".join(
        f'<text x="{x(c):.1f}" y="{HEIGHT - BOTTOM + 20}" text-anchor="middle" font-size="12">'
        f"{c:,}</text>"
        for c in counts
    )
    step = 10 ** math.floor(math.log10(top / 4)) if top > 4 else 1
    grid = ""
    value = 0.0
    while value <= top:
        grid += (
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}"'
            f' stroke="#ddd"/><text x="{LEFT - 8}" y="{y(value) + 4:.1f}" text-anchor="end"'
            f' font-size="12">{value:g}</text>'
        )
        value += step * math.ceil(top / step / 6)
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"
  font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>
  <text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{title}</text>
  {grid}{ticks}
  <text x="{WIDTH / 2}" y="{HEIGHT - 18}" text-anchor="middle" font-size="12">
    subscribers (10 per product view), orders at 100/s</text>
  <text x="18" y="{HEIGHT / 2}" transform="rotate(-90 18 {HEIGHT / 2})" text-anchor="middle"
    font-size="12">ms from mutation sent to view held</text>
  {line(p99, "#dc2626", "p99")}{line(p50, "#2563eb", "p50")}
  <text x="{WIDTH - RIGHT - 60}" y="{TOP + 14}" fill="#dc2626" font-size="13">p99</text>
  <text x="{WIDTH - RIGHT - 60}" y="{TOP + 32}" fill="#2563eb" font-size="13">p50</text>
</svg>"""


async def render(chart: str, out: Path) -> None:
    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("needs Debian's chromium (apt-get install -y chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"]
        )
        page = await browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        await page.set_content(chart)
        await page.screenshot(path=str(out))
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default="Live delivery on 2 cores, one server process")
    args = parser.parse_args()
    runs = [
        run
        for line in args.runs.read_text().splitlines()
        if line.strip() and "subscribers" in (run := json.loads(line))
    ]
    runs.sort(key=lambda r: int(r["subscribers"]))
    asyncio.run(render(svg(runs, args.title), args.out))


if __name__ == "__main__":
    main()
