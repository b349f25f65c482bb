// Opens the broker's console in Debian's Chromium, reads messages through its form, saves a
// screenshot, and prints the rows shown as JSON: [{offset, key, value}].
//
//   node browse.mjs URL SCREENSHOT TOPIC PARTITION offset=N|time=YYYY-MM-DDTHH:MM:SS COUNT
import { openConsole } from "./browser.mjs";

const [url, screenshot, topic, partition, from, count] = process.argv.slice(2);
const { browser, page } = await openConsole(url, 1100);
try {
  await page.waitForSelector(`#b-topic option[value="${topic}"]`, { state: "attached", timeout: 30000 });
  await page.selectOption("#b-topic", topic);
  await page.fill("#b-partition", partition);
  await page.fill("#b-limit", count);
  const [kind, value] = from.split("=");
  await page.fill(kind === "time" ? "#b-time" : "#b-offset", value);
  await page.click("#browse button[type=submit]");
  await page.waitForSelector("#messages[data-loaded]", { timeout: 30000 });
  const rows = await page.$$eval("#messages tr[data-offset]", (trs) => trs.map((tr) => ({
    offset: Number(tr.dataset.offset),
    key: tr.querySelector("[data-key]").textContent,
    value: tr.querySelector("[data-value]").textContent,
  })));
  await page.locator("#messages").scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify(rows));
} finally {
  await browser.close();
}
