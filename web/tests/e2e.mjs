// End-to-end test of the web page: headless Chromium generates an image through the UI with a tiny model and checks
// the progress updates, the live preview, the gallery image and its parameters, then cancels a long run.
// Usage: node e2e.mjs http://127.0.0.1:PORT   (tests/server/run_web_e2e.sh starts the server)
import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const base = process.argv[2];
if (!base) { console.error("usage: node e2e.mjs BASE_URL"); process.exit(2); }
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "nuance-e2e-profile-"));

let failures = 0, checks = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failures++; console.error("FAIL:", what); } else { console.log("ok:", what); }
}

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));

  await page.goto(base + "/", { waitUntil: "load" });
  check((await page.title()) === "nuance", "page title");
  // The form is filled from /api/v1/info.
  await page.waitForFunction(() => document.querySelectorAll("#model option").length > 0 &&
                                   document.querySelectorAll("#sampler option").length > 0, null, { timeout: 20000 });
  const models = await page.$$eval("#model option", (os) => os.map((o) => o.value));
  check(models.includes("tiny.safetensors"), "model list has the tiny model: " + models.join(", "));
  const samplers = await page.$$eval("#sampler option", (os) => os.map((o) => o.textContent));
  check(samplers.includes("Euler a") && samplers.includes("DPM++ 2M"), "sampler list uses display names");

  // 1. Generate: 8 steps at 64x64, fixed seed, batch of 2.
  await page.fill("#prompt", "a red apple on a table");
  await page.fill("#negative", "blurry");
  await page.selectOption("#model", "tiny.safetensors");
  await page.selectOption("#sampler", "euler");
  await page.fill("#steps", "8");
  await page.fill("#cfg", "5");
  await page.fill("#width", "64");
  await page.fill("#height", "64");
  await page.fill("#seed", "1234");
  await page.fill("#batch", "2");
  await page.click("#generate");
  check(await page.isDisabled("#generate"), "generate button disabled while running");
  await page.waitForFunction(() => document.querySelectorAll("#gallery figure img").length === 2, null, { timeout: 120000 });
  const log = await page.evaluate(() => window.nuanceProgressLog);
  const running = log.filter((e) => e.status === "running");
  const steps = new Set(running.map((e) => `${e.image}:${e.step}`));
  check(running.length >= 3 && steps.size >= 3, `progress events seen (${running.length} running, ${steps.size} distinct steps)`);
  const fractions = running.map((e) => e.progress);
  check(fractions.every((v, i) => i === 0 || v >= fractions[i - 1] - 1e-9), "progress never goes backwards");
  check(Math.max(...running.map((e) => e.total)) === 8, "progress reports 8 steps");
  const previewSrc = await page.getAttribute("#preview", "src");
  check(previewSrc && previewSrc.startsWith("data:image/png;base64,"), "live preview image shown");
  const bar = await page.$eval("#bar", (el) => el.style.width);
  check(bar === "100%", "progress bar full at the end: " + bar);
  const imgs = await page.$$eval("#gallery figure img", (els) => els.map((e) => ({ w: e.naturalWidth, h: e.naturalHeight, seed: e.dataset.seed, complete: e.complete })));
  check(imgs.every((i) => i.complete && i.w === 64 && i.h === 64), "gallery images decode as 64x64 PNGs");
  check(imgs.map((i) => i.seed).sort().join(",") === "1234,1235", "gallery seeds 1234 and 1235");
  const captions = await page.$$eval("#gallery figcaption", (els) => els.map((e) => e.textContent));
  check(captions.some((c) => c.includes("Steps: 8") && c.includes("Sampler: Euler") && c.includes("Seed: 1234") &&
                             c.includes("Size: 64x64") && c.includes("Negative prompt: blurry")),
        "gallery shows the A1111 parameters");
  check(!(await page.isDisabled("#generate")) && (await page.isDisabled("#cancel")), "buttons reset after the run");
  // The image really is a PNG with the parameters chunk.
  const pngHasParams = await page.$eval("#gallery figure img", (img) => atob(img.src.split(",")[1]).includes("parameters"));
  check(pngHasParams, "gallery PNG carries the 'parameters' text chunk");

  // 2. Cancel a long run from the page.
  await page.fill("#steps", "150");
  await page.fill("#batch", "1");
  const before = (await page.evaluate(() => window.nuanceProgressLog.length));
  await page.click("#generate");
  await page.waitForFunction((n) => window.nuanceProgressLog.slice(n).some((e) => e.status === "running" && e.step >= 1),
                             before, { timeout: 60000 });
  await page.click("#cancel");
  await page.waitForFunction(() => document.getElementById("progress-text").textContent === "cancelled", null, { timeout: 60000 });
  check(true, "cancel ends the run");
  check((await page.$$("#gallery figure img")).length === 2, "a cancelled run adds no image");
  check(!(await page.isDisabled("#generate")), "generate enabled again after cancel");

  // 3. A request the server refuses shows its message.
  await page.fill("#steps", "4");
  await page.fill("#width", "4000");
  await page.click("#generate");
  await page.waitForFunction(() => document.getElementById("error").textContent.includes("4000"), null, { timeout: 20000 });
  check((await page.textContent("#error")).includes("width"), "the server's message for width 4000 is shown");
  check(!(await page.isDisabled("#generate")), "generate enabled after a refused request");

  check(consoleErrors.filter((e) => !e.includes("400")).length === 0, "no console errors: " + consoleErrors.join(" | "));
} catch (e) {
  failures++;
  console.error("FAIL: exception:", e);
  try {
    const page = context.pages()[0];
    console.error("page state: error=", await page.textContent("#error"), " progress=", await page.textContent("#progress-text"),
                  " validity=", await page.$$eval("input", (els) => els.filter((x) => !x.checkValidity()).map((x) => x.id + ":" + x.validationMessage)));
  } catch (e2) { /* the page is gone */ }
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(`web e2e: ${checks} checks, ${failures} failures`);
process.exit(failures ? 1 : 0);
