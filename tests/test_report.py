"""The results report: built from dvc.yaml, dvc.lock and the outputs; every image and link resolves.

The CI tests parse the HTML and Markdown and check that every target exists; the Chromium test
(skipped where /usr/bin/chromium is absent) loads the page headless and checks that every image
decoded and every link's target could be fetched.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml

from dicelib import report
from dicelib.config import ROOT

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")  # 1x1 pixel


class _Targets(HTMLParser):
    """Collects every img src and a href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])


def _targets(page: Path) -> _Targets:
    parser = _Targets()
    parser.feed(page.read_text())
    return parser


def _missing(page: Path, targets: list[str]) -> list[str]:
    """Return the relative targets of `page` that do not exist (anchors inside the page are checked by id)."""
    text = page.read_text()
    missing = []
    for target in targets:
        if target.startswith("#"):
            if f'id="{target[1:]}"' not in text:
                missing.append(target)
        elif not (page.parent / unquote(target)).exists():
            missing.append(target)
    return missing


def _toy_pipeline(root: Path) -> None:
    """Write a two-stage pipeline (a notebook stage and a module stage) with outputs and a lock into `root`."""
    (root / "reports/figures").mkdir(parents=True)
    (root / "reports/tables").mkdir()
    (root / "reports/metrics").mkdir()
    (root / "reports/notebooks").mkdir()
    (root / "notebooks").mkdir()
    (root / "docs").mkdir()
    for name in ("a-curve", "b-new"):
        (root / f"reports/figures/{name}.png").write_bytes(PNG)
    (root / "reports/tables/scores.md").write_text("| x | score |\n|---|---|\n| 1 | 0.25 |\n")
    (root / "reports/tables/scores.csv").write_text("x,score\n1,0.25\n")
    (root / "reports/metrics/toy.json").write_text(json.dumps({"edit_score": 0.8139, "exact_parse": 0.9583}))
    (root / "notebooks/01-toy.ipynb").write_text("{}")
    (root / "reports/notebooks/01-toy.ipynb").write_text("{}")
    (root / "README.md").write_text("# toy\n")
    (root / "docs/captions.yaml").write_text("figures:\n  a-curve: The curve, captioned.\ntables:\n  scores: Scores per x\n")
    stages = {
        "train": {"cmd": "OMP_WAIT_POLICY=PASSIVE python -m dicelib.toy_train --steps ${train.steps}",
                  "deps": ["data/toy"], "outs": [{"models/toy.pt": {"cache": False}}]},
        "toy": {"cmd": "python -m dicelib.io notebook notebooks/01-toy.ipynb reports/notebooks/01-toy.ipynb",
                "deps": ["notebooks/01-toy.ipynb", "models/toy.pt"],
                "outs": [{"reports/notebooks/01-toy.ipynb": {"cache": False}}, {"reports/figures/a-curve.png": {}},
                         "reports/figures/b-new.png", "reports/tables/scores.md", "reports/tables/scores.csv"],
                "metrics": [{"reports/metrics/toy.json": {"cache": False}}]},
        "report": {"cmd": "python -m dicelib.report", "outs": ["reports/index.html"]},
    }
    lock = {"schema": "2.0", "stages": {
        "toy": {"deps": [{"path": "models/toy.pt", "md5": "0123456789abcdef0123"},
                         {"path": "notebooks/01-toy.ipynb", "md5": "ffff"}],
                "params": {"params.yaml": {"base.seed": 0, "toy": {"lambda1": 0.7, "taus": "[0.6, 0.8]"}}},
                "outs": [{"path": "reports/figures/a-curve.png", "md5": "aaaabbbbccccdddd"}]}}}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def test_toy_pipeline_report_has_every_figure_caption_param_hash_and_number(tmp_path):
    _toy_pipeline(tmp_path)
    page, md = report.build(tmp_path)
    assert page == tmp_path / "reports/index.html" and md == tmp_path / "reports/RESULTS.md"
    for path in (page, md):
        text = path.read_text()
        assert "The curve, captioned." in text  # captioned from docs/captions.yaml
        assert "b-new (made by the `toy` stage; no caption yet in docs/captions.yaml)" in text  # default caption
        assert "Scores per x" in text and "0.25" in text  # the table, inlined
        assert "0.8139" in text and "0.9583" in text  # every metric, read from its file
        assert "toy.lambda1" in text and "0.7" in text and "base.seed" in text  # the params dvc.lock recorded
        assert "models/toy.pt" in text and "0123456789ab" in text  # the model's hash from dvc.lock
        assert "notebooks/01-toy.ipynb" in text and "aaaabbbbcccc" in text
        assert "Stage `report`" not in text and 'id="report"' not in text  # the report leaves itself out
    assert "python -m dicelib.toy_train" not in md.read_text()  # a stage with no figure, table or metrics is left out
    assert _missing(page, _targets(page).images + _targets(page).links) == []
    assert len(_targets(page).images) == 2


def test_a_new_stage_with_a_figure_appears_with_a_default_caption(tmp_path):
    _toy_pipeline(tmp_path)
    spec = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    spec["stages"]["next"] = {"cmd": "python -m dicelib.next", "outs": ["reports/figures/06-next.png"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (tmp_path / "reports/figures/06-next.png").write_bytes(PNG)
    text = report.build(tmp_path)[1].read_text()
    assert "![06-next](figures/06-next.png)" in text
    assert "*06-next (made by the `next` stage; no caption yet in docs/captions.yaml)*" in text
    assert "Made by `python -m dicelib.next`" in text


def test_report_of_the_repository_links_only_to_files_that_exist(tmp_path):
    out = tmp_path / "reports"
    page, md = report.build(ROOT, out)
    targets = _targets(page)
    figures = [p for p in report.stages(ROOT) for p in p.figures]
    assert len(targets.images) == len(figures) >= 20, (len(targets.images), len(figures))
    assert _missing(page, targets.images + targets.links) == []
    md_targets = re.findall(r"\]\(([^)\s]+)\)", md.read_text())
    assert _missing(md, md_targets) == []
    captions = report.captions(ROOT)["figures"]
    for figure in figures:  # every committed figure has a written caption, not the default
        assert Path(figure).stem in captions, f"{figure}: add its caption to {report.CAPTIONS}"


def test_committed_report_is_the_one_the_outputs_give():
    """reports/RESULTS.md as committed equals a fresh build (the `report` stage was rerun after the outputs changed)."""
    committed = ROOT / "reports/RESULTS.md"
    if not committed.exists():
        pytest.skip("reports/RESULTS.md not built yet: run `dvc repro report`")
    stage_list, texts = report.stages(ROOT), report.captions(ROOT)
    assert committed.read_text() == report.render_markdown(ROOT, ROOT / "reports", stage_list, texts)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=10000"]
PROBE = """<script>
window.addEventListener('load', () => {
  const bad = [];
  for (const img of document.images) if (!(img.complete && img.naturalWidth > 0)) bad.push('img ' + img.getAttribute('src'));
  for (const a of document.querySelectorAll('a[href]')) {
    const href = a.getAttribute('href');
    if (href.startsWith('#')) { if (!document.getElementById(href.slice(1))) bad.push('anchor ' + href); continue; }
    const req = new XMLHttpRequest();
    try { req.open('GET', a.href, false); req.send(); if (req.status !== 0 && req.status !== 200) bad.push('link ' + href);
          else if (!req.responseText && !/\\.(png)$/.test(href)) bad.push('empty ' + href); }
    catch (e) { bad.push('link ' + href + ' ' + e); }
  }
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = 'IMAGES ' + document.images.length + ' LINKS ' + document.querySelectorAll('a[href]').length + ' BAD ' + JSON.stringify(bad);
  document.body.appendChild(out);
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless check needs Chromium (Debian: apt-get install chromium); "
                                             "the parse test above checks the same targets without it")
def test_report_in_headless_chromium_loads_every_image_and_link(tmp_path):
    out = tmp_path / "reports"
    page, _ = report.build(ROOT, out)
    page.write_text(page.read_text().replace("</body>", PROBE))
    run = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    probe = re.search(r"IMAGES (\d+) LINKS (\d+) BAD (\[.*?\])</pre>", run.stdout)
    assert probe, run.stdout[-2000:] + run.stderr[-2000:]
    images, links, bad = int(probe.group(1)), int(probe.group(2)), json.loads(probe.group(3).replace("&quot;", '"'))
    assert images >= 20 and links >= 20 and bad == [], (images, links, bad)
