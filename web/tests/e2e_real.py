#!/usr/bin/python3
"""The web page's LoRA picker, ControlNet slot and mask painter against the REAL server routes (no mocked fetch).

tests/server/run_web_e2e_real.sh starts `nuance serve` with a tiny random SD1.5 model (-m), a --lora-dir holding a
tiny LoRA for it, a --controlnet-dir holding a tiny random ControlNet for it and an --embedding-dir, then runs:

    /usr/bin/python3 web/tests/e2e_real.py BASE_URL LORA_NAME CONTROLNET_NAME [SCREENSHOT_DIR]

Through the UI: pick the LoRA (its tag goes into the prompt and the server merges it: "Lora hashes" in the PNG), run a
ControlNet unit (the server's /sdapi/v1/txt2img with alwayson_scripts: "ControlNet 0" in the PNG), paint a mask and
inpaint (the server's /sdapi/v1/img2img: "Mask blur" and the strength in the PNG). The PNG's 'parameters' text chunk
is read from the image the page shows. Exit 0 when every check passes, 1 otherwise.
"""
import os
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
import base64
import struct
import zlib

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

if len(sys.argv) < 4:
    print("usage: e2e_real.py BASE_URL LORA_NAME CONTROLNET_NAME [SCREENSHOT_DIR]", file=sys.stderr)
    sys.exit(2)
BASE, LORA, CONTROLNET = sys.argv[1:4]
SHOTS = sys.argv[4] if len(sys.argv) > 4 else None
checks = failures = 0


def check(cond, what):
    global checks, failures
    checks += 1
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1


profile = tempfile.mkdtemp(prefix="nuance-e2e-real-profile-")
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
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(script, *args))


def fill(id_, value):
    js("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", el(id_), str(value))


def generate_and_wait(timeout):
    before = js("return window.nuanceProgressLog.length;")
    el("generate").click()
    wait_for("return window.nuanceProgressLog.length > arguments[0] || document.getElementById('error').textContent;", 20, before)
    wait_for("return !document.getElementById('generate').disabled;", timeout)


def png_file(w, h):
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


def shown_png():
    """The PNG bytes of the image the page shows as its result, and its size."""
    wait_for("const r = document.getElementById('result'); return !r.hidden && r.complete && r.naturalWidth > 0;", 10)
    src = js("return document.getElementById('result').getAttribute('src') || '';")
    if src.startswith("data:"):
        data = base64.b64decode(src.split(",", 1)[1])
    else:
        data = urllib.request.urlopen(urllib.parse.urljoin(BASE + "/", src), timeout=10).read()
    return data


def png_parameters(png):
    """The 'parameters' tEXt/iTXt chunk of a PNG (A1111's infotext), '' when absent."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return ""
    pos = 8
    while pos + 8 <= len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + n]
        if kind == b"tEXt" and data.startswith(b"parameters\x00"):
            return data.split(b"\x00", 1)[1].decode("latin1")
        if kind == b"iTXt" and data.startswith(b"parameters\x00"):
            return data.split(b"\x00", 5)[-1].decode("utf-8")
        pos += 12 + n
    return ""


def png_size(png):
    return struct.unpack(">II", png[16:24]) if png[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


try:
    driver.get(BASE + "/")
    wait_for("return document.querySelectorAll('#sampler option').length > 0 && "
             "document.getElementById('width').value === '512';", 20)
    # The extras come from the server's own routes.
    wait_for("return !document.getElementById('lora-box').hidden && !document.getElementById('cn-box').hidden;", 20)
    names = [b.get_attribute("data-name") for b in driver.find_elements(By.CSS_SELECTOR, "#lora-list button")]
    check(names == [LORA], "the LoRA picker lists the server's --lora-dir: %r" % names)
    models = [o.get_attribute("value") for o in Select(el("cn-model")).options]
    check(len(models) == 1 and models[0].startswith(CONTROLNET), "the ControlNet slot lists --controlnet-dir: %r" % models)
    modules = [o.get_attribute("value") for o in Select(el("cn-module")).options]
    check("canny" in modules and "none" in modules, "the server's preprocessors are offered: %r" % modules)

    fill("prompt", "a red apple")
    fill("negative", "blurry")
    fill("width", 64)
    fill("height", 64)
    fill("steps", 2)
    fill("seed", 5)
    Select(el("sampler")).select_by_value("euler")

    # 1. LoRA picker -> the tag in the prompt -> merged by the server for the job.
    driver.find_element(By.CSS_SELECTOR, "#lora-list button").click()
    tag = "<lora:%s:0.8>" % LORA
    check(el("prompt").get_property("value") == "a red apple " + tag, "clicking the LoRA inserts " + tag)
    generate_and_wait(60)
    png = shown_png()
    params = png_parameters(png)
    check(el("error").text == "", "the LoRA run succeeded: " + el("error").text)
    check(tag in params and ('Lora hashes: "%s: ' % LORA) in params and png_size(png) == (64, 64),
          "the PNG says the LoRA was applied: " + params.replace("\n", " | "))

    # 2. ControlNet slot -> /sdapi/v1/txt2img with alwayson_scripts on the real server.
    fill("prompt", "a red apple")
    js("document.getElementById('cn-box').open = true;")
    control_png = png_file(64, 64)
    el("cn-file").send_keys(control_png)
    wait_for("return document.getElementById('cn-thumb').naturalWidth === 64;", 10)
    Select(el("cn-module")).select_by_value("canny")
    fill("cn-weight", 0.7)
    fill("cn-end", 0.8)
    generate_and_wait(60)
    png = shown_png()
    params = png_parameters(png)
    check(el("error").text == "", "the ControlNet run succeeded: " + el("error").text)
    check("ControlNet 0: " in params and "canny" in params and CONTROLNET in params and "Weight: 0.7" in params,
          "the PNG carries the ControlNet unit: " + params.replace("\n", " | "))
    el("cn-enable").click()

    # 3. Mask painter -> /sdapi/v1/img2img with init_images + mask on the real server.
    el("init-file").send_keys(control_png)
    wait_for("return document.getElementById('init-box').classList.contains('on');", 10)
    el("mask-enable").click()
    wait_for("return document.getElementById('mask-base').naturalWidth === 64 && "
             "document.getElementById('mask-canvas').offsetWidth > 0;", 10)
    fill("brush-size", 12)
    canvas = el("mask-canvas")
    ActionChains(driver).move_to_element_with_offset(canvas, -10, -10).click_and_hold().move_by_offset(25, 0) \
        .move_by_offset(0, 20).release().perform()
    check(js("return window.nuanceA1111.painted();") is True, "the mask is painted")
    fill("strength", 0.6)
    generate_and_wait(60)
    png = shown_png()
    params = png_parameters(png)
    check(el("error").text == "", "the inpaint run succeeded: " + el("error").text)
    check("Mask blur: 4" in params and "Denoising strength: 0.6" in params and png_size(png) == (64, 64),
          "the PNG carries the inpaint settings: " + params.replace("\n", " | "))
    os.unlink(control_png)
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        driver.save_screenshot(os.path.join(SHOTS, "real-routes.png"))
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, "no console errors: " + " | ".join(errors))
except Exception as e:  # noqa: BLE001 -- any failure is reported with the page state
    failures += 1
    print("FAIL: exception:", repr(e))
    try:
        print("page state: error=", el("error").text, " progress=", el("progress-text").text)
    except Exception:  # noqa: BLE001
        pass
finally:
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)

print("web e2e (real routes): %d checks, %d failures" % (checks, failures))
sys.exit(1 if failures else 0)
