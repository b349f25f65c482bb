// Opens the broker's console in Debian's Chromium and watches one consumer group's lag chart
// until the group's lag is 0 (or 60 s pass), then saves a screenshot and prints the chart's
// points (the group's total lag at each refresh) as JSON.
//
//   node lag.mjs URL SCREENSHOT GROUP
import { chromium } from "playwright-core";

const [url, screenshot, group] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(url);
  const chart = `svg.lag[data-group="${group}"]`;
  await page.waitForSelector(chart, { timeout: 30000 });
  console.error("watching");
  await page.waitForFunction((g) => {
    const s = document.querySelector(`section.group[data-group="${g}"]`);
    return s !== null && s.dataset.lag === "0";
  }, group, { timeout: 60000, polling: 250 });
  // One more refresh, so the chart has drawn its last point.
  await page.waitForTimeout(2500);
  const points = await page.$eval(chart, (e) => JSON.parse(e.dataset.points));
  await page.locator(`section.group[data-group="${group}"]`).scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(points));
} finally {
  await browser.close();
}
