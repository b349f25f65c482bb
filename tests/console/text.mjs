// Opens the broker's console in Debian's Chromium, waits for SELECTOR, saves a screenshot, and
// prints the text of every element it matches as JSON.
//
//   node text.mjs URL SCREENSHOT SELECTOR
import { chromium } from "playwright-core";

const [url, screenshot, selector] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(url);
  await page.waitForSelector(selector, { timeout: 30000 });
  const texts = await page.$$eval(selector, (els) => els.map((e) => e.textContent));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(texts));
} finally {
  await browser.close();
}
