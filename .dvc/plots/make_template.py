"""Write .dvc/plots/offline.html: template.html with the vendored vega, vega-lite and vega-embed builds inline."""

from pathlib import Path

HERE = Path(__file__).parent
page = (HERE / "template.html").read_text()
for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js"):
    code = (HERE / "vendor" / name).read_text()
    if "</script" in code or any("{" + p + "}" in code for p in ("plot_divs", "scripts", "refresh_tag")):
        raise SystemExit(f"{name} holds '</script' or a DVC placeholder: it cannot go inline")
    page = page.replace(f"/*{name}*/", code)
(HERE / "offline.html").write_text(page)
print(f"wrote {HERE / 'offline.html'} ({len(page) / 1e6:.2f} MB)")
