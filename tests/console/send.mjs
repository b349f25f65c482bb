// Sends a test message through the broker's console in Debian's Chromium and prints what the
// page said: {sent: "partition:offset" or "error", text}.
//
//   node send.mjs URL SCREENSHOT TOPIC PARTITION KEY VALUE
import { chromium } from "playwright-core";

const [url, screenshot, topic, partition, key, value] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(url);
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
