/**
 * The report page renders in a real browser: headless Chromium (Debian's package) opens
 * the HTML of a short run and the test checks every chart drew (SVG paths with points,
 * pixels on a canvas the SVG is painted onto). Skips with the reason where Chromium is
 * absent; .ci/run installs it.
 */
import { describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { main, type Io } from "./cli.ts";

const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const have = existsSync(CHROMIUM);
const reason = have ? "" : ` (skipped: ${CHROMIUM} not found; apt-get install -y chromium)`;
if (!have)
  console.warn(
    `sim/html.test.ts: ${CHROMIUM} not found, the browser test skips; apt-get install -y chromium`,
  );

const quiet: Io = { out: () => {}, err: () => {}, progress: null };

interface ChartCheck {
  readonly title: string;
  readonly paths: number;
  readonly points: number[];
  readonly widths: number[];
  readonly lengths: number[];
  readonly bars: number;
  readonly inked: number;
}

// Runs in the page (a string: the project's TypeScript has no DOM types). For each chart:
// its series paths and bars, and the SVG painted onto a canvas to count coloured pixels.
const MEASURE = `(async () => {
  const out = [];
  for (const host of Array.from(document.querySelectorAll(".chart"))) {
    const svg = host.querySelector("svg");
    const paths = Array.from(host.querySelectorAll("path.series"));
    let inked = 0;
    if (svg !== null) {
      const xml = new XMLSerializer().serializeToString(svg);
      const img = new Image();
      img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(xml);
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const px = g.getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < px.length; i += 4) {
        // Saturated pixels: the series colours, not the greys of axes and grid.
        if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) inked++;
      }
    }
    out.push({
      title: host.dataset.title || "",
      paths: paths.length,
      points: paths.map((p) => Number(p.getAttribute("data-points"))),
      widths: paths.map((p) => p.getBBox().width),
      lengths: paths.map((p) => p.getTotalLength()),
      bars: host.querySelectorAll("rect.bar").length,
      inked,
    });
  }
  return out;
})()`;

describe("report page in headless Chromium", () => {
  it.skipIf(!have)(`every chart of a run's page draws${reason}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "sim-html-"));
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    });
    try {
      const code = await main(
        ["run", "hostile-guest", "--seed", "4", "--steps", "400", "--faults", "0.05", "--report", dir],
        quiet,
      );
      expect(code).toBe(0);
      const page = await browser.newPage({ viewport: { width: 1400, height: 1200 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      const requests: string[] = [];
      page.on("request", (r) => {
        if (!r.url().startsWith("file:")) requests.push(r.url());
      });
      await page.goto(pathToFileURL(join(dir, "hostile-guest-4", "report.html")).href);
      await page.waitForSelector("body[data-drawn=yes]", { timeout: 10_000 });
      const checks = (await page.evaluate(MEASURE)) as ChartCheck[];
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
      expect(checks.map((c) => c.title)).toEqual([
        "Ring occupancy: the split-queue target",
        "Throughput",
        "Notifications sent and suppressed",
        "virtio-net under attack: frames",
        "faults",
      ]);
      for (const c of checks) {
        if (c.title === "faults") {
          expect(c.bars, "fault bars").toBeGreaterThan(0);
        } else {
          expect(c.paths, `${c.title}: series paths`).toBeGreaterThan(0);
          for (const p of c.points) expect(p, `${c.title}: points`).toBeGreaterThan(10);
          expect(Math.max(...c.widths), `${c.title}: width`).toBeGreaterThan(300);
          expect(Math.max(...c.lengths), `${c.title}: length`).toBeGreaterThan(300);
        }
        expect(c.inked, `${c.title}: coloured pixels`).toBeGreaterThan(200);
      }
      await page.close();
    } finally {
      await browser.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
