// Answers two waiting tasks from the shoal dashboard in headless Chromium, as a person
// approving or rejecting a step would: the first with Succeed and a JSON output, the
// second with Fail and an error and cause.
//   node dashboard_answer.cjs URL APPROVED_EXECUTION_ARN REJECTED_EXECUTION_ARN
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");
const [url, approved, rejected] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    const errors = [];
    page.on("pageerror", e => errors.push(String(e)));
    await page.goto(`${url}/`);
    const row = arn => page.locator(`tr.waiting:has(a[href="#/execution/${encodeURIComponent(arn)}"])`);
    await row(approved).waitFor({ timeout: 15000 });
    await row(rejected).waitFor({ timeout: 15000 });
    const before = await page.locator("tr.waiting").count();
    const waitsFor = await row(approved).locator("td").nth(2).textContent();

    await row(approved).locator('textarea[data-answer="output"]').fill('{"approved": true, "by": "dashboard"}');
    await row(approved).locator('button[data-do="success"]').click();
    await row(approved).waitFor({ state: "detached", timeout: 15000 });

    await row(rejected).locator('input[data-answer="error"]').fill("Rejected");
    await row(rejected).locator('input[data-answer="cause"]').fill("not this time");
    await row(rejected).locator('button[data-do="failure"]').click();
    await row(rejected).waitFor({ state: "detached", timeout: 15000 });
    const after = await page.locator("tr.waiting").count();
    console.log(JSON.stringify({ before, after, waitsFor, errors }));
  } finally {
    await browser.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
