// Debian's Chromium, headless, through playwright-core, with the flags this machine's closed
// network needs (no background connections). Shared by the console test scripts.
import { chromium } from "playwright-core";

/** Opens `url` in a new headless Chromium; returns the browser (to close) and the page. */
export async function openConsole(url, height = 900) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height } });
    await page.goto(url);
    return { browser, page };
  } catch (e) {
    await browser.close();
    throw e;
  }
}
