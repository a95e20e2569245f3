// Drives `podgate review` in headless Chromium (Debian's, through playwright-core) the way
// a reviewer uses it: open the index, filter it, open a session, play it, seek to a marker,
// search the transcript, and take a screenshot. Run by tests/e2e/review_browser.rs:
//
//   node review.mjs '{"url": "http://127.0.0.1:PORT/", "filter": {"action": "shell"},
//                     "expect": "text the session printed", "screenshot": "out.png"}'
//
// Prints one JSON line of what it saw; exits 1 with a reason on the first failed check,
// and on any script error or Content-Security-Policy violation in the page.
import { chromium } from "playwright-core";

const spec = JSON.parse(process.argv[2] ?? "{}");
const TIMEOUT = 20000;
const seen = { errors: [] };

function fail(why) {
  console.error(`review.mjs: ${why}`);
  console.log(JSON.stringify(seen));
  process.exit(1);
}

const browser = await chromium.launch({
  executablePath: process.env.PODGATE_CHROMIUM ?? "/usr/bin/chromium",
  // The machine has no network but loopback: keep Chromium from trying to reach Google.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: TIMEOUT,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => seen.errors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") seen.errors.push(`console: ${m.text()}`);
  });

  // The index, unfiltered.
  await page.goto(spec.url);
  const rows = page.locator("#sessions tr:has(td)");
  seen.all = await rows.count();
  if (seen.all < 2) fail(`the index lists ${seen.all} session(s), expected at least 2`);

  // Filter through the form, as a reviewer would.
  for (const [name, value] of Object.entries(spec.filter ?? {})) {
    await page.fill(`form.filters input[name="${name}"]`, value);
  }
  await Promise.all([page.waitForURL(/\?/), page.click("form.filters button[type=submit]")]);
  seen.filtered = await rows.count();
  if (seen.filtered < 1 || seen.filtered >= seen.all) {
    fail(`the filter left ${seen.filtered} of ${seen.all} sessions`);
  }
  const column = await page.locator("#sessions tr:first-child th").allTextContents();
  for (const [name, value] of Object.entries(spec.filter ?? {})) {
    const i = column.indexOf(name);
    if (i < 0) continue;
    const cells = await rows.locator(`td:nth-child(${i + 1})`).allTextContents();
    if (cells.some((c) => c !== value)) fail(`filter ${name}=${value} shows ${cells}`);
  }
  seen.badges = await rows.locator(".badge").allTextContents();
  if (seen.badges.some((b) => b !== "verified")) fail(`badges: ${seen.badges}`);

  // The session page: the player plays the recording and shows what the session printed.
  await Promise.all([page.waitForURL(/\/session\//), rows.first().locator("a").first().click()]);
  await page.locator("#player .ap-player").waitFor();
  await page.locator("#player .ap-player").click();
  const term = page.locator("#player .ap-term");
  await term.waitFor();
  if (spec.expect) {
    await page.waitForFunction(
      ([sel, text]) => document.querySelector(sel)?.textContent.includes(text),
      ["#player .ap-term", spec.expect],
      { timeout: TIMEOUT },
    ).catch(async () => fail(`the player never showed ${JSON.stringify(spec.expect)}: ${await term.textContent()}`));
    seen.played = true;
  }

  // Markers: listed, drawn on the player's progress bar, and a click seeks the player.
  const markers = page.locator("#markers a[data-time]");
  seen.markers = await markers.count();
  seen.marker_labels = await page.locator("#markers li").allTextContents();
  if (seen.markers < (spec.markers ?? 0)) fail(`${seen.markers} markers, expected ${spec.markers}`);
  if (seen.markers > 0) {
    const t = parseFloat(await markers.last().getAttribute("data-time"));
    await page.locator(`#marker-bar a[data-time="${await markers.last().getAttribute("data-time")}"]`).click();
    await page
      .waitForFunction((t) => Math.abs(window.podgateReview.player.getCurrentTime() - t) < 0.05, t)
      .catch(async () => fail(`a marker click did not seek to ${t}`));
    seen.sought = true;
  }
  // The player's own progress bar shows the markers before the recording's last event.
  seen.player_markers = await page.locator("#player .ap-marker-container").count();

  if (spec.expect) {
    // The transcript search highlights the recorded text.
    await page.fill("#search", spec.expect);
    await page.locator("#transcript mark").first().waitFor();
    seen.matches = await page.locator("#transcript mark").count();
    seen.count_text = await page.locator("#search-count").textContent();
    await page.fill("#search", "no such text anywhere 0xdeadbeef");
    await page.waitForFunction(() => document.getElementById("search-count").textContent === "no match");

    // The picture for docs/REVIEW.md: the player mid-session, the search highlighted.
    await page.fill("#search", spec.expect);
    await page.locator("#transcript mark").first().waitFor();
    if (spec.screenshot) await page.screenshot({ path: spec.screenshot, fullPage: true });
  }
  if (seen.errors.length > 0) fail(`the page reported errors: ${seen.errors.join("; ")}`);
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
