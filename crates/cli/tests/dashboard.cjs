// Opens the shoal dashboard in headless Chromium during a running map run: the
// counters must move, a failed item must open to show its error and cause, the
// reader's bytes are read off its line, and a screenshot is saved for the Rust test
// to check.
//   node dashboard.cjs URL EXECUTION_ARN SCREENSHOT.jpg
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");
const [url, arn, shot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1400 } });
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(`${url}/#/execution/${encodeURIComponent(arn)}`);
    const succeeded = page.locator('.counter[data-counter="succeeded"] b');
    await succeeded.waitFor({ timeout: 15000 });
    const first = Number(await succeeded.textContent());
    let later = first;
    for (let i = 0; i < 60 && later <= first; i++) {
      await page.waitForTimeout(250);
      later = Number(await succeeded.textContent());
    }
    const failure = page.locator("tr.failure").first();
    await failure.waitFor({ timeout: 15000 });
    await failure.click();
    const cause = await page.locator("tr.cause:not([hidden]) pre").first().textContent({ timeout: 5000 });
    const graphNodes = await page.locator(".graph .node").count();
    const reader = page.locator("[data-bytes-read]").first();
    const bytesRead = await reader.getAttribute("data-bytes-read", { timeout: 5000 });
    const bytesTotal = await reader.getAttribute("data-bytes-total");
    await page.screenshot({ path: shot, type: "jpeg", quality: 80, fullPage: false });
    console.log(JSON.stringify({ first, later, cause, graphNodes, bytesRead, bytesTotal, errors }));
  } finally {
    await browser.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
