// The HTML load report in a real browser (tests/report_html.rs).
//
// args: { file, screenshot, deadlineMs, userDataDir, chromium }
// No steps: opens `file` as a file:// page with JavaScript disabled (the plots must
// render without it), reads every plot from the DOM, takes a full-page screenshot
// into `screenshot`, and returns
// result: { title, url, command, scripts, errors, plots: [{ id, width, height,
//           noData, marker, paths: [{ name, dataPoints, drawn, length }] }] }
// where `drawn` is the number of points in the path's `d` (M and L commands) and
// `length` the path's rendered length (0 for a path the browser did not draw).

import { pathToFileURL } from "node:url";
import { args, run } from "./lib.mjs";

run(async (browser) => {
  const page = await browser.newPage({ type: "window" });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e?.message ?? e)));
  page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
  page.on("request", (r) => {
    if (!r.url().startsWith("file:")) errors.push(`fetched: ${r.url()}`);
  });
  await page.setJavaScriptEnabled(false);
  await page.setViewport({ width: 1400, height: 900 });
  await page.goto(pathToFileURL(args.file).href, { waitUntil: "load", timeout: 20_000 });
  // JavaScript is off in the page; puppeteer's evaluate still runs in an isolated world.
  const seen = await page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent ?? null;
    const plots = [...document.querySelectorAll("svg.plot")].map((svg) => {
      const box = svg.getBoundingClientRect();
      return {
        id: svg.id,
        width: box.width,
        height: box.height,
        noData: svg.querySelector("text.nodata") !== null,
        marker: svg.querySelector("line.marker") !== null,
        paths: [...svg.querySelectorAll("path.line")].map((p) => ({
          name: p.dataset.name,
          dataPoints: Number(p.dataset.points),
          drawn: (p.getAttribute("d").match(/[ML]/g) ?? []).length,
          length: p.getTotalLength(),
        })),
      };
    });
    return {
      title: document.title,
      url: text("url"),
      command: text("command"),
      scripts: document.querySelectorAll("script").length,
      plots,
    };
  });
  await page.screenshot({ path: args.screenshot, fullPage: true });
  return { ...seen, errors };
});
