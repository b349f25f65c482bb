// Opens the broker's console in Debian's Chromium (headless, through playwright-core), waits
// until the page shows what the test waits for, saves a screenshot, and prints every replica
// cell of the picture as JSON, with the quorum line and the topic's summary line:
// {cells: [{topic, partition, broker, role}], quorum, summary}.
//
//   node shoot.mjs URL SCREENSHOT TOPIC [DOWN_BROKER]
//
// With DOWN_BROKER, it also waits until that broker is shown down and leads nothing of TOPIC.
import { openConsole } from "./browser.mjs";

const [url, screenshot, topic, down] = process.argv.slice(2);
const { browser, page } = await openConsole(url);
try {
  await page.waitForSelector(`section[data-topic="${topic}"]`, { timeout: 30000 });
  if (down !== undefined) {
    await page.waitForFunction(([t, b]) =>
      document.querySelector(`.broker.down[data-broker="${b}"]`) !== null &&
      document.querySelector(`span.cell[data-topic="${t}"][data-broker="${b}"][data-role="leader"]`) === null &&
      document.querySelector(`tr[data-topic="${t}"][data-leader="-1"]`) === null,
      [topic, down], { timeout: 45000, polling: 500 });
  }
  const cells = await page.$$eval(`span.cell[data-topic="${topic}"]`, (els) => els.map((e) => ({
    topic: e.dataset.topic, partition: Number(e.dataset.partition),
    broker: Number(e.dataset.broker), role: e.dataset.role,
  })));
  const quorum = await page.textContent("#quorum");
  const summary = await page.textContent(`section[data-topic="${topic}"] p.configs`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ cells, quorum, summary }));
} finally {
  await browser.close();
}
