#!/usr/bin/env python3
"""Writes gaia/data/testdata's progressive JPEGs (Pillow, libjpeg-turbo's
default progression): the seeds of the scan-limit tests, which splice their
last scan over and over into "scan bombs".

  /usr/bin/python3 scripts/make_jpeg_fixtures.py
"""
import os

from PIL import Image

out = os.path.join(os.path.dirname(__file__), "..", "gaia", "data", "testdata")
os.makedirs(out, exist_ok=True)
for name, (w, h) in {"progressive-64.jpg": (64, 48), "progressive-2048.jpg": (2048, 2048)}.items():
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 255) // w, (y * 255) // h, ((x + y) * 255) // (w + h)) for y in range(h) for x in range(w)])
    im.save(os.path.join(out, name), "JPEG", quality=85, progressive=True)
    print(name, os.path.getsize(os.path.join(out, name)), "bytes")
