#!/usr/bin/python3
"""End-to-end test of the web page in headless Chromium through Selenium (Debian: python3-selenium, chromium-driver).

tests/server/run_web_e2e.sh starts `nuance serve` with the built-in nuance-emoji model (-m, the default model), a tiny
random SD1.5 model in --models-dir, --output-dir, --max-side 1024 and --max-pixels 262144, then runs:

    /usr/bin/python3 web/tests/e2e.py BASE_URL [SCREENSHOT_DIR]

The page must fill its form from the picked model's defaults, generate through the UI (progress, previews, the final
image shown large and pixel-sharp, click to enlarge), save outputs on the server and list them again after a reload,
reuse a seed, send an image to img2img, cancel a long run, show the server's message for a refused request, run the
hires fix, and (with the LoRA/ControlNet routes and the A1111 runs mocked in the page's fetch) insert a LoRA tag, send a
ControlNet unit and an inpaint mask painted on the canvas (paint, invert, clear).
Exit 0 when every check passes, 1 otherwise.
"""
import base64
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = sys.argv[1] if len(sys.argv) > 1 else None
SHOTS = sys.argv[2] if len(sys.argv) > 2 else None
if not BASE:
    print("usage: e2e.py BASE_URL [SCREENSHOT_DIR]", file=sys.stderr)
    sys.exit(2)

checks = 0
failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    if cond:
        print("ok:", what)
    else:
        failures += 1
        print("FAIL:", what)


profile = tempfile.mkdtemp(prefix="nuance-e2e-profile-")
opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
          "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--window-size=1280,1000", "--user-data-dir=" + profile]:
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=opts)
driver.set_script_timeout(30)


def js(script, *args):
    return driver.execute_script(script, *args)


def el(id_):
    return driver.find_element(By.ID, id_)


def wait_for(script, timeout, *args):
    """Waits until the JS expression (a function body returning a value) is truthy; returns the value."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script, *args))


def fill(id_, value):
    e = el(id_)
    js("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", e, str(value))


def select(id_, value):
    Select(el(id_)).select_by_value(value)


def disabled(id_):
    return not el(id_).is_enabled()


def shot(name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        driver.save_screenshot(os.path.join(SHOTS, name))


def broken_images():
    """Visible <img> elements that did not decode (the browser would draw a broken-image icon)."""
    return js("""return [...document.images].filter((i) => i.offsetParent !== null && i.getAttribute('src') !== null &&
                         i.complete && i.naturalWidth === 0).map((i) => i.id || i.alt);""")


def gallery():
    return js("""return [...document.querySelectorAll('#gallery figure')].map((f) => {
                   const i = f.querySelector('img');
                   return {name: f.dataset.name, seed: i.dataset.seed, w: i.naturalWidth, h: i.naturalHeight,
                           complete: i.complete, title: f.querySelector('figcaption').title}; });""")


def invalid_inputs():
    return js("return [...document.querySelectorAll('input')].filter((x) => !x.checkValidity()).map((x) => x.id + ': ' + x.validationMessage);")


def generate_and_wait(timeout):
    """Clicks Generate and waits until the run ended (the page is idle again)."""
    before = js("return window.nuanceProgressLog.length;")
    bad = invalid_inputs()
    if bad:
        raise AssertionError("the form does not submit, invalid inputs: %r" % bad)
    el("generate").click()
    wait_for("return window.nuanceProgressLog.length > arguments[0] || document.getElementById('error').textContent;", 20, before)
    wait_idle(timeout)


def wait_idle(timeout):
    wait_for("return !document.getElementById('generate').disabled;", timeout)


def wait_gallery(n, timeout=20):
    """The gallery reloads after each run (asynchronously): waits until it shows n decoded images."""
    wait_for("const imgs = [...document.querySelectorAll('#gallery figure img')];"
             "return imgs.length === arguments[0] && imgs.every((i) => i.complete && i.naturalWidth > 0);", timeout, n)


def png_file(w, h):
    """A w x h RGB gradient PNG in a temporary file (for the file inputs), without PIL."""
    raw = b"".join(b"\x00" + b"".join(bytes((x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), 128)) for x in range(w))
                   for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    f = tempfile.NamedTemporaryFile(suffix=".png", delete=False)
    f.write(png)
    f.close()
    return f.name


# A fetch wrapper for the routes other developers' servers answer (LoRA list, ControlNet lists) and for the A1111 runs
# that need them (mask, ControlNet): lists are mocked, POST bodies recorded and answered with a 1x1 image.
MOCK_FETCH = """
window.__sent = [];
const realFetch = window.fetch.bind(window);
const ok = (x) => new Response(JSON.stringify(x), {status: 200, headers: {'Content-Type': 'application/json'}});
const onePixel = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNoaGgAAAMEAYFL09IQAAAAAElFTkSuQmCC';
window.fetch = async (url, o) => {
  const u = String(url);
  if (u.endsWith('/sdapi/v1/loras')) return ok([{name: 'detail_tweaker', alias: 'detail', path: '/l/detail_tweaker.safetensors', metadata: {}}]);
  if (u.endsWith('/controlnet/module_list')) return ok({module_list: ['none', 'canny']});
  if (u.endsWith('/controlnet/model_list')) return ok({model_list: ['control_v11p_sd15_canny [d14c016b]']});
  if (u.endsWith('/sdapi/v1/txt2img') || u.endsWith('/sdapi/v1/img2img')) {
    window.__sent.push({url: u, body: JSON.parse(o.body)});
    return ok({images: [onePixel], parameters: {}, info: JSON.stringify({seed: 5, all_seeds: [5], infotexts: ['mocked run'], width: 1, height: 1})});
  }
  return realFetch(url, o);
};
return loadExtras();
"""


def mask_white():
    return js("""const d = maskCanvas.getContext('2d').getImageData(0, 0, maskCanvas.width, maskCanvas.height).data;
                 let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 127) n++; return [n, d.length / 4];""")


def result():
    wait_for("const r = document.getElementById('result');"
             "return r.hidden || (r.complete && r.naturalWidth > 0 && r.style.width !== '');", 10)
    return js("""const r = document.getElementById('result'); const cs = getComputedStyle(r);
                 return {kind: r.dataset.kind, hidden: r.hidden, w: r.naturalWidth, h: r.naturalHeight,
                         shownW: r.getBoundingClientRect().width, rendering: cs.imageRendering, seed: r.dataset.seed,
                         src: r.getAttribute('src') || ''};""")


try:
    driver.get(BASE + "/")
    check(driver.title == "nuance", "page title")
    wait_for("return document.querySelectorAll('#model option').length > 1 && "
             "document.querySelectorAll('#sampler option').length > 0 && document.getElementById('width').value === '32';", 20)
    models = js("return [...document.querySelectorAll('#model option')].map((o) => o.value);")
    check("tiny.safetensors" in models and "nuance-emoji" in models, "model list: " + ", ".join(models))
    samplers = js("return [...document.querySelectorAll('#sampler option')].map((o) => o.textContent);")
    check("Euler a" in samplers and "DPM++ 2M" in samplers, "sampler list uses display names")
    schedules = js("return [...document.querySelectorAll('#scheduler option')].map((o) => o.value);")
    check("custom" not in schedules and "karras" in schedules, "the custom schedule (needs sigmas) is not offered: " + ",".join(schedules))
    check(el("width").get_attribute("min") == "8" and el("width").get_attribute("step") == "8" and
          el("width").get_attribute("max") == "1024" and el("height").get_attribute("max") == "1024",
          "width/height: min 8, step 8, max = the server's --max-side")
    check(el("result").get_attribute("hidden") is not None and not broken_images(), "no broken image before the first run")
    shot("01-start.png")

    # 1. The form follows the model: the built-in emoji model is 32x32, CFG 5, 20 steps, Euler a, with an example prompt.
    form = js("""return {w: document.getElementById('width').value, h: document.getElementById('height').value,
                         steps: document.getElementById('steps').value, cfg: document.getElementById('cfg').value,
                         sampler: document.getElementById('sampler').value, prompt: document.getElementById('prompt').value};""")
    check(form == {"w": "32", "h": "32", "steps": "20", "cfg": "3", "sampler": "euler_a", "prompt": "grinning face, noto style"},
          "form filled from nuance-emoji's defaults: %r" % form)
    select("model", "tiny.safetensors")
    check(el("width").get_property("value") == "512" and el("cfg").get_property("value") == "7",
          "picking the SD1 model sets 512x512, CFG 7")
    select("model", "nuance-emoji")
    check(el("width").get_property("value") == "32" and el("prompt").get_property("value") == "grinning face, noto style",
          "picking nuance-emoji again sets 32x32 and its example prompt")

    # 2. Generate with the model's defaults: the final image is shown large and pixel-sharp, not the preview.
    fill("seed", 7)
    generate_and_wait(120)
    r = result()
    check(r["kind"] == "final" and not r["hidden"] and r["w"] == 32 and r["h"] == 32, "final 32x32 image shown: %r" % {k: r[k] for k in ("kind", "w", "h")})
    check(r["shownW"] >= 256 and r["rendering"] == "pixelated", "shown large (%d px) with image-rendering: pixelated (%s)" % (r["shownW"], r["rendering"]))
    info_text = el("result-info").text
    check("Seed: 7" in info_text and "Size: 32x32" in info_text and "CFG scale: 3" in info_text and "Steps: 20" in info_text,
          "result parameters show the model's defaults: " + info_text.replace("\n", " | "))
    wait_gallery(1)
    g = gallery()
    check(len(g) == 1 and g[0]["seed"] == "7" and g[0]["w"] == 32, "the output was saved and listed: %r" % g)
    shot("02-emoji.png")
    el("result").click()
    wait_for("const b = document.getElementById('lightbox-img');"
             "return document.getElementById('lightbox').classList.contains('on') && b.naturalWidth > 0 && b.style.width !== '';", 10)
    big = js("const b = document.getElementById('lightbox-img'); return [b.getBoundingClientRect().width, getComputedStyle(b).imageRendering];")
    check(big[0] > r["shownW"] and big[1] == "pixelated", "click enlarges the image (%d px, %s)" % (big[0], big[1]))
    shot("03-lightbox.png")
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait_for("return !document.getElementById('lightbox').classList.contains('on');", 5)
    check(True, "Escape closes the enlarged image")

    # 3. The tiny SD1 model: 8 steps at 64x64, fixed seed, batch of 2 (the checks of the former Playwright test).
    select("model", "tiny.safetensors")
    fill("prompt", "a red apple on a table")
    fill("negative", "blurry")
    select("sampler", "euler")
    fill("steps", 8)
    fill("cfg", 5)
    fill("width", 64)
    fill("height", 64)
    fill("seed", 1234)
    fill("batch-count", 2)
    before = js("return window.nuanceProgressLog.length;")
    el("generate").click()
    check(disabled("generate"), "generate button disabled while running")
    wait_idle(120)
    log = js("return window.nuanceProgressLog.slice(arguments[0]);", before)
    running = [e for e in log if e["status"] == "running"]
    steps = {(e["image"], e["step"]) for e in running}
    check(len(running) >= 3 and len(steps) >= 3, "progress events seen (%d running, %d distinct steps)" % (len(running), len(steps)))
    fr = [e["progress"] for e in running]
    check(all(fr[i] >= fr[i - 1] - 1e-9 for i in range(1, len(fr))), "progress never goes backwards")
    check(max(e["total"] for e in running) == 8, "progress reports 8 steps")
    check(any(e["preview"] for e in running), "live previews arrived")
    check(el("bar").value_of_css_property("width") != "0px" and js("return document.getElementById('bar').style.width;") == "100%",
          "progress bar full at the end")
    r = result()
    check(r["kind"] == "final" and r["w"] == 64 and r["src"].startswith("data:image/png;base64,"), "the final image replaces the preview")
    batch = js("return [...document.querySelectorAll('#batch img')].map((i) => i.dataset.seed);")
    check(sorted(batch) == ["1234", "1235"], "batch thumbnails for seeds 1234 and 1235: %r" % batch)
    info_text = el("result-info").text
    check(all(s in info_text for s in ("Steps: 8", "Sampler: Euler", "Seed: 1234", "Size: 64x64", "Negative prompt: blurry")),
          "the A1111 parameters are shown")
    png = base64.b64decode(r["src"].split(",", 1)[1])
    check(png[:8] == b"\x89PNG\r\n\x1a\n" and b"parameters" in png, "the PNG carries the 'parameters' text chunk")
    check(not disabled("generate") and disabled("cancel"), "buttons reset after the run")
    wait_gallery(3)
    g = gallery()
    check(len(g) == 3 and [x["seed"] for x in g] == ["1235", "1234", "7"] and all(x["complete"] and x["w"] > 0 for x in g),
          "saved outputs listed newest first: %r" % [x["seed"] for x in g])
    saved = js("""return fetch(document.querySelector('#gallery figure img').src).then((r) => r.arrayBuffer())
                  .then((b) => { const s = new TextDecoder('latin1').decode(new Uint8Array(b)); return s.includes('parameters') && s.includes('Seed: 1235'); });""")
    check(saved is True, "the saved PNG has the A1111 infotext")
    shot("04-batch.png")

    # 4. Reuse seed, from a saved output.
    driver.find_elements(By.CSS_SELECTOR, "#gallery figure")[1].click()
    check(result()["seed"] == "1234", "clicking a saved output shows it")
    fill("seed", -1)
    el("reuse-seed").click()
    check(el("seed").get_property("value") == "1234", "reuse seed puts 1234 into the form")

    # 5. Send to img2img.
    el("to-img2img").click()
    wait_for("return document.getElementById('init-box').classList.contains('on') && document.getElementById('init-thumb').naturalWidth === 64;", 10)
    check(True, "send to img2img shows the init image")
    fill("strength", 0.5)
    fill("steps", 4)
    fill("batch-count", 1)
    generate_and_wait(120)
    info_text = el("result-info").text
    wait_gallery(4)
    check("Denoising strength: 0.5" in info_text and result()["w"] == 64, "img2img ran from the sent image: " + info_text.replace("\n", " | "))
    check(el("error").text == "", "no error after img2img")
    el("init-clear").click()
    check(not js("return document.getElementById('init-box').classList.contains('on');"), "the init image can be removed")

    # 6. A reload lists the saved outputs again, newest first.
    driver.get(BASE + "/")
    wait_for("return document.querySelectorAll('#gallery figure').length === 4 && "
             "[...document.querySelectorAll('#gallery img')].every((i) => i.complete && i.naturalWidth > 0);", 20)
    g = gallery()
    check([x["seed"] for x in g][1:] == ["1235", "1234", "7"] and "Denoising strength" in g[0]["title"],
          "after a reload the gallery lists the 4 saved outputs, newest (img2img) first")
    check(el("result").get_attribute("hidden") is not None and not broken_images(), "no broken image after a reload")

    # 7. Cancel a long run from the page.
    wait_for("return document.getElementById('width').value === '32';", 10)
    select("model", "tiny.safetensors")
    fill("width", 64)
    fill("height", 64)
    fill("steps", 150)
    before = js("return window.nuanceProgressLog.length;")
    el("generate").click()
    wait_for("return window.nuanceProgressLog.slice(arguments[0]).some((e) => e.status === 'running' && e.step >= 1);", 60, before)
    el("cancel").click()
    wait_for("return document.getElementById('progress-text').textContent === 'cancelled';", 60)
    check(True, "cancel ends the run")
    check(len(gallery()) == 4, "a cancelled run saves no image")
    check(not disabled("generate"), "generate enabled again after cancel")
    check(not broken_images(), "no broken image after cancel")

    # 8. The browser refuses sizes that are not multiples of 8; the server's message is shown for what it refuses.
    fill("steps", 4)
    fill("width", 12)
    check(js("return !document.getElementById('width').checkValidity();"), "width 12 is refused by the form (multiples of 8)")
    fill("width", 1024)
    fill("height", 1024)
    el("generate").click()
    wait_for("return document.getElementById('error').textContent.includes('1048576');", 20)
    check("262144" in el("error").text, "the server's message for 1024x1024 (over --max-pixels) is shown: " + el("error").text)
    check(not disabled("generate"), "generate enabled after a refused request")

    # The screenshot for the README: the emoji model's result with the gallery.
    fill("width", 64)
    fill("height", 64)
    js("document.getElementById('error').textContent = '';")
    driver.find_elements(By.CSS_SELECTOR, "#gallery figure")[3].click()
    select("model", "nuance-emoji")
    shot("05-final.png")

    # 9. Hires fix through the jobs API: 64x64 first pass, x1.5, a 96x96 result with A1111's infotext; progress
    # counts both passes as one run.
    select("model", "tiny.safetensors")
    fill("width", 64)
    fill("height", 64)
    fill("steps", 4)
    fill("seed", 11)
    js("document.getElementById('hires-box').open = true;")
    el("hr-enable").click()
    fill("hr-scale", 1.5)
    check(el("hr-size").text == "64×64 → 96×96", "the hires target size is shown: " + el("hr-size").text)
    before = js("return window.nuanceProgressLog.length;")
    generate_and_wait(180)
    info_text = el("result-info").text
    check(result()["w"] == 96 and "Hires upscale: 1.5" in info_text and "Hires upscaler: Latent" in info_text and
          "Size: 64x64" in info_text, "hires fix made a 96x96 image: " + info_text.replace("\n", " | "))
    fr = [e["progress"] or 0 for e in js("return window.nuanceProgressLog.slice(arguments[0]);", before) if e["status"] == "running"]
    check(fr and all(fr[i] >= fr[i - 1] - 1e-9 for i in range(1, len(fr))), "hires progress never goes backwards: %r" % fr)
    el("hr-enable").click()

    # 10. LoRA picker and ControlNet slot stay hidden on a server without them (loras [] and 404 here) ...
    check(el("lora-box").get_attribute("hidden") is not None, "no LoRA picker when the server lists no LoRA")
    check(el("cn-box").get_attribute("hidden") is not None, "no ControlNet slot when /controlnet/model_list is missing")
    # ... and appear, filled, when the routes answer (mocked: other developers' routes).
    driver.execute_async_script("const done = arguments[arguments.length - 1];" +
                                "(async () => {" + MOCK_FETCH + "})().then(() => done(true), (e) => done(String(e)));")
    check(el("lora-box").get_attribute("hidden") is None and
          [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#lora-list button")] == ["detail"], "the LoRA picker lists the LoRA")
    fill("prompt", "a red apple")
    driver.find_element(By.CSS_SELECTOR, "#lora-list button").click()
    check(el("prompt").get_property("value") == "a red apple <lora:detail_tweaker:0.8>",
          "clicking a LoRA inserts <lora:NAME:0.8>: " + el("prompt").get_property("value"))
    check(el("cn-box").get_attribute("hidden") is None and
          [o.get_attribute("value") for o in Select(el("cn-module")).options] == ["none", "canny"] and
          [o.get_attribute("value") for o in Select(el("cn-model")).options] == ["control_v11p_sd15_canny [d14c016b]"],
          "the ControlNet slot lists the modules and models")
    js("document.getElementById('cn-box').open = true;")
    control_png = png_file(64, 64)
    el("cn-file").send_keys(control_png)
    wait_for("return document.getElementById('cn-thumb').naturalWidth === 64;", 10)
    select("cn-module", "canny")
    fill("cn-weight", 0.7)
    fill("cn-end", 0.8)
    generate_and_wait(30)
    sent = js("return window.__sent;")
    args = sent[-1]["body"].get("alwayson_scripts", {}).get("controlnet", {}).get("args", [{}])[0] if sent else {}
    check(sent and sent[-1]["url"].endswith("/sdapi/v1/txt2img") and args.get("enabled") is True and
          args.get("module") == "canny" and args.get("model") == "control_v11p_sd15_canny [d14c016b]" and
          args.get("weight") == 0.7 and args.get("guidance_start") == 0 and args.get("guidance_end") == 0.8 and
          args.get("image", "").startswith("data:image/png;base64,"),
          "a ControlNet run sends alwayson_scripts.controlnet.args: %r" % {k: v for k, v in args.items() if k != "image"})
    check("<lora:detail_tweaker:0.8>" in sent[-1]["body"]["prompt"], "the LoRA tag goes with the prompt")
    el("cn-enable").click()

    # 11. The mask painter: paint, invert, clear, and an img2img run with init_images + mask (white = repaint).
    el("init-file").send_keys(control_png)
    wait_for("return document.getElementById('init-box').classList.contains('on');", 10)
    el("mask-enable").click()
    wait_for("return document.getElementById('mask-base').naturalWidth === 64 && document.getElementById('mask-canvas').offsetWidth > 0;", 10)
    check(mask_white()[0] == 0, "the mask starts empty (all keep)")
    canvas = el("mask-canvas")
    fill("brush-size", 8)
    ActionChains(driver).move_to_element_with_offset(canvas, -20, -20).click_and_hold().move_by_offset(30, 0) \
        .move_by_offset(0, 25).release().perform()
    white, total = mask_white()
    check(0 < white < total // 2, "painting marks part of the mask white (%d of %d pixels)" % (white, total))
    el("mask-invert").click()
    check(mask_white()[0] == total - white, "invert swaps repaint and keep")
    el("mask-clear").click()
    check(mask_white()[0] == 0 and not js("return window.nuanceA1111.painted();"), "clear empties the mask")
    ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(10, 10).release().perform()
    fill("strength", 0.6)
    js("document.getElementById('hires-box').open = true;")
    shot("06-extras.png")
    generate_and_wait(30)
    sent = js("return window.__sent;")
    body = sent[-1]["body"] if sent else {}
    check(sent and sent[-1]["url"].endswith("/sdapi/v1/img2img") and body.get("mask", "").startswith("data:image/png;base64,") and
          body.get("init_images", [""])[0].startswith("data:image/png;base64,") and body.get("denoising_strength") == 0.6 and
          "alwayson_scripts" not in body, "an inpaint run sends init_images + mask to /sdapi/v1/img2img")
    mask_png = base64.b64decode(body.get("mask", ",").split(",", 1)[1] or b"")
    check(mask_png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", mask_png[16:24]) == (64, 64),
          "the mask is a PNG of the init image's size")
    check(result()["w"] == 1 and el("result-info").text == "mocked run" and el("error").text == "",
          "the A1111 answer is shown as the result")
    os.unlink(control_png)

    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE" and "400" not in e["message"] and
              not ("/controlnet/" in e["message"] and "404" in e["message"])]
    check(not errors, "no console errors: " + " | ".join(errors))
except Exception as e:  # noqa: BLE001 -- any failure is reported with the page state
    failures += 1
    print("FAIL: exception:", repr(e))
    try:
        print("page state: error=", el("error").text, " progress=", el("progress-text").text, " invalid=", invalid_inputs())
        shot("99-failure.png")
    except Exception:  # noqa: BLE001
        pass
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)

print("web e2e: %d checks, %d failures" % (checks, failures))
sys.exit(1 if failures else 0)
