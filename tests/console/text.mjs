// Opens the broker's console in Debian's Chromium, waits for SELECTOR, saves a screenshot, and
// prints the text of every element it matches as JSON.
//
//   node text.mjs URL SCREENSHOT SELECTOR
import { openConsole } from "./browser.mjs";

const [url, screenshot, selector] = process.argv.slice(2);
const { browser, page } = await openConsole(url);
try {
  await page.waitForSelector(selector, { timeout: 30000 });
  const texts = await page.$$eval(selector, (els) => els.map((e) => e.textContent));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(texts));
} finally {
  await browser.close();
}
