// Opens the broker's console in Debian's Chromium and watches one consumer group's lag chart.
// For each lag in STEPS, in turn, it waits until the page shows it and then writes
// "seen LAG" on stderr (the test commits the next offsets only then). At the end it saves a
// screenshot and prints the chart's points (the group's total lag at each refresh) as JSON.
//
//   node lag.mjs URL SCREENSHOT GROUP STEPS   (STEPS like 2000,1500,1000,500,0)
import { openConsole } from "./browser.mjs";

const [url, screenshot, group, steps] = process.argv.slice(2);
const { browser, page } = await openConsole(url);
try {
  const chart = `svg.lag[data-group="${group}"]`;
  await page.waitForSelector(chart, { timeout: 30000 });
  for (const lag of steps.split(",")) {
    await page.waitForFunction(([g, want]) => {
      const s = document.querySelector(`svg.lag[data-group="${g}"]`);
      const points = s === null ? [] : JSON.parse(s.dataset.points);
      return points.length > 0 && String(points[points.length - 1]) === want;
    }, [group, lag], { timeout: 60000, polling: 200 });
    console.error(`seen ${lag}`);
  }
  const points = await page.$eval(chart, (e) => JSON.parse(e.dataset.points));
  await page.locator(`section.group[data-group="${group}"]`).scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(points));
} finally {
  await browser.close();
}
