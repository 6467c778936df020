#!/usr/bin/python3
"""Makes docs/web-page.png: the web page after a few runs of the built-in emoji model (headless Chromium, Selenium).

    build/nuance serve --port 7861 --output-dir /tmp/nuance-shots &     # the built-in model, an empty output folder
    /usr/bin/python3 web/tests/screenshot.py http://127.0.0.1:7861 docs/web-page.png
"""
import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

base, out = sys.argv[1], sys.argv[2]
opts = webdriver.ChromeOptions()
opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
          "--window-size=1280,1240", "--user-data-dir=" + tempfile.mkdtemp(prefix="nuance-shot-")]:
    opts.add_argument(a)
d = webdriver.Chrome(service=Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=opts)
try:
    d.get(base + "/")
    WebDriverWait(d, 20).until(lambda d: d.execute_script("return document.getElementById('width').value === '32';"))
    for prompt, seed, n in [("red apple, noto style", 1, 2), ("red heart, noto style", 1, 2),
                            ("grinning face, twemoji style", 4, 2), ("grinning face, noto style", 1, 3)]:
        d.execute_script("document.getElementById('prompt').value = arguments[0];"
                         "document.getElementById('seed').value = arguments[1];"
                         "document.getElementById('batch-count').value = arguments[2];", prompt, seed, n)
        d.find_element("id", "generate").click()
        WebDriverWait(d, 120).until(lambda d: d.execute_script(
            "return !document.getElementById('generate').disabled && document.getElementById('result').dataset.kind === 'final';"))
    WebDriverWait(d, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#gallery img')].every((i) => i.complete && i.naturalWidth > 0);"))
    d.save_screenshot(out)
finally:
    d.quit()
print("wrote", out)
