// Opens the broker's console in Debian's Chromium and watches one consumer group's lag chart
// until the group's lag is 0 (or 60 s pass), then saves a screenshot and prints the chart's
// points (the group's total lag at each refresh) as JSON.
//
//   node lag.mjs URL SCREENSHOT GROUP
import { openConsole } from "./browser.mjs";

const [url, screenshot, group] = process.argv.slice(2);
const { browser, page } = await openConsole(url);
try {
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
