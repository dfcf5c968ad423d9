"""The planning page ships in the package and loads nothing from elsewhere (no CDN): its HTML names only
/static/ assets, its stylesheet has no url() or @import, its script imports nothing and fetches only
the service's own /api/ paths."""

import re
from pathlib import Path

import flopcast.web

STATIC = Path(flopcast.web.__file__).parent / "static"


def test_assets_exist_and_are_local():
    """index.html, app.js and app.css are in the package; every src/href is a /static/ path (or a data:
    URI or in-page anchor); the CSS pulls in nothing; the script fetches only /api/ paths."""
    html = (STATIC / "index.html").read_text()
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', html)
    assert "/static/app.js" in refs and "/static/app.css" in refs
    assert all(r.startswith(("/static/", "data:", "#")) for r in refs), refs
    css = (STATIC / "app.css").read_text()
    assert "url(" not in css and "@import" not in css
    js = (STATIC / "app.js").read_text()
    assert not re.search(r"^\s*import\b|\bimport\(|importScripts|\beval\(", js, re.M)
    fetched = re.findall(r"fetch\(\s*`([^`]*)`", js)
    assert fetched and all(f.startswith("/api/") for f in fetched), fetched
    urls = set(re.findall(r"https?://[^\s\"'`)]+", html + css + js))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls   # the SVG namespace name, never fetched
