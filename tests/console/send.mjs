// Sends a test message through the broker's console in Debian's Chromium and prints what the
// page said: {sent: "partition:offset" or "error", text}.
//
//   node send.mjs URL SCREENSHOT TOPIC PARTITION KEY VALUE
import { openConsole } from "./browser.mjs";

const [url, screenshot, topic, partition, key, value] = process.argv.slice(2);
const { browser, page } = await openConsole(url);
try {
  await page.waitForSelector(`#b-topic option[value="${topic}"]`, { state: "attached", timeout: 30000 });
  await page.selectOption("#b-topic", topic);
  await page.fill("#s-partition", partition);
  await page.fill("#s-key", key);
  await page.fill("#s-value", value);
  await page.click("#send button[type=submit]");
  await page.waitForSelector("#s-status[data-sent]", { timeout: 30000 });
  const sent = await page.getAttribute("#s-status", "data-sent");
  const text = await page.textContent("#s-status");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ sent, text }));
} finally {
  await browser.close();
}
