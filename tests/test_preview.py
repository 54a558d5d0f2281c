"""`satsft preview` in a real browser: Debian's Chromium driven by Playwright, the page opened from file:// with
every other request blocked; images load, grounding boxes sit where the answers put them, filters filter, and
held-out rows on shared ground carry their tag."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import ALL_OUTPUTS, held_out_tile_over_a_train_tile, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("SATSFT_REQUIRE_BROWSER"),
                                reason="Chromium is not installed (apt-get install -y chromium)")
PER_TASK = 5


@pytest.fixture(scope="module")
def preview(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("preview")
    held_out_tile_over_a_train_tile(base / "tree")  # so that some cards carry the shared-ground tag
    out = base / "out"
    run_cli("build", "--input", str(base / "tree"), "--output", str(out), *ALL_OUTPUTS)
    proc = run_cli("preview", str(out), "--n", str(PER_TASK))
    page = out / "preview" / "index.html"
    assert str(page) in proc.stdout and page.is_file()
    return out, page


def test_preview_in_chromium(preview, tmp_path):
    if CHROMIUM is None:
        raise AssertionError("SATSFT_REQUIRE_BROWSER is set but Chromium is missing")
    from playwright.sync_api import sync_playwright

    out, page_path = preview
    report = json.loads((out / "build_report.json").read_text())
    attempted: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})

            def guard(route):
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    attempted.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("[...document.images].every(i => i.complete)")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
            assert widths and all(w > 0 for _, w in widths), [s for s, w in widths if not w][:5]

            # The cards of held-out rows on shared ground, and only those, carry the tag, with its reason.
            data = (out / "preview" / "sample.js").read_text()
            shared = sorted(c["id"] for c in json.loads(data[data.index("=") + 1:].strip().rstrip(";"))["cards"]
                            if c["shared_ground"])
            tags = page.eval_on_selector_all("article.card .tag.shared", "ts => ts.map(t => "
                                             "[t.closest('article').querySelector('h2').textContent, t.title])")
            assert shared and sorted(i for i, _ in tags) == shared, (tags, shared)
            assert all("a tile of another split shows this tile's ground" in title for _, title in tags)

            # Every drawn box of a grounding card is its JSON bbox times the displayed chip, within 1 px.
            checked = 0
            for card in page.locator("article.card[data-task^='grounding']").all():
                answer = card.locator(".msg.assistant .answer").inner_text()
                boxes = json.loads(answer[answer.index("["):answer.rindex("]") + 1])
                img = card.locator(".frame img").first.bounding_box()
                rects = card.locator("rect.box").all()
                assert len(rects) == len(boxes)
                for rect, box in zip(rects, boxes, strict=True):
                    got = rect.bounding_box()
                    x1, y1, x2, y2 = box["bbox"]
                    want = (img["x"] + x1 * img["width"], img["y"] + y1 * img["height"],
                            (x2 - x1) * img["width"], (y2 - y1) * img["height"])
                    # the 2 px stroke straddles the edge, so the drawn outline reaches 1 px beyond the box
                    have = (got["x"] + 1, got["y"] + 1, got["width"] - 2, got["height"] - 2)
                    assert all(abs(a - b) <= 1 for a, b in zip(want, have, strict=True)), (box, have, want)
                    assert rect.get_attribute("stroke").lower() == _palette()[box["label"]].lower()
                    checked += 1
            assert checked > 0

            # A task filter shows only that task's cards, as many as the sample holds of it.
            rows_per_task = {t: sum(s.values()) for t, s in report["rows"]["by_task_split"].items()}
            for task in ("grounding_all", "production_analysis", "absence"):
                page.click(f"button[data-facet='task'][data-value='{task}']")
                visible = page.eval_on_selector_all(
                    "article.card", "cs => cs.filter(c => c.style.display !== 'none').map(c => c.dataset.task)")
                assert Counter(visible) == {task: min(PER_TASK, rows_per_task[task])}
            page.click("button[data-facet='task'][data-value='']")
            page.fill("#search", "__caption")
            visible = page.eval_on_selector_all("article.card",
                                                "cs => cs.filter(c => c.style.display !== 'none').length")
            assert visible == min(PER_TASK, rows_per_task["caption"])
            page.fill("#search", "")
            page.screenshot(path=str(tmp_path / "preview.png"), full_page=False)
        finally:
            browser.close()
    assert attempted == [], f"the page asked for non-file resources: {attempted[:5]}"
    assert (tmp_path / "preview.png").stat().st_size > 10_000


def test_an_image_gone_from_the_output_is_a_card_that_says_so(preview, tmp_path):
    """A chip deleted from a finished build: preview stopped with a FileNotFoundError traceback. Now its cards
    show which image is gone, the rest of the page works, and the summary warns and points at validate."""
    if CHROMIUM is None:
        raise AssertionError("SATSFT_REQUIRE_BROWSER is set but Chromium is missing")
    from playwright.sync_api import sync_playwright

    out = tmp_path / "out"
    shutil.copytree(preview[0], out, symlinks=True, ignore=shutil.ignore_patterns("preview"))
    report = json.loads((out / "build_report.json").read_text())
    report["files"].pop("parquet")  # rows read from JSONL, which names image files (Parquet embeds them here)
    (out / "build_report.json").write_text(json.dumps(report))
    gone = sorted((out / "images").rglob("*.png"))[0]
    gone.unlink()
    rel = gone.relative_to(out).as_posix()
    proc = run_cli("preview", str(out), "--n", "60", "--to", str(tmp_path / "page"))
    assert f"image(s) the shown rows name cannot be read (first: {rel})" in proc.stdout, proc.stdout
    data = (tmp_path / "page" / "sample.js").read_text()
    cards = json.loads(data[data.index("=") + 1:].strip().rstrip(";"))["cards"]
    naming = sorted(c["id"] for c in cards if any(v == f"{rel}: missing" for v in c.get("missing", {}).values()))
    assert naming, "some shown row names the chip"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto((tmp_path / "page" / "index.html").as_uri())
            page.wait_for_function("[...document.images].every(i => i.complete)")
            said = page.eval_on_selector_all("article.card .frame.gone", "fs => fs.map(f => "
                                             "[f.closest('article').querySelector('h2').textContent, f.textContent])")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
        finally:
            browser.close()
    assert errors == [] and sorted(i for i, _ in said) == naming, (errors, said)
    assert all(text == f"image {rel}: missing" for _, text in said)
    assert widths and all(w > 0 for w in widths), "every other image loads"


def _palette() -> dict[str, str]:
    from transforms.classes import CLASS_NAMES, PALETTE_HEX

    return dict(zip(CLASS_NAMES, PALETTE_HEX, strict=True))


def test_preview_sample_is_seeded_and_stratified():
    from pipeline.review.preview import stratified_sample

    keys = [{"sample_id": f"s{i}", "task": "t", "split": "train" if i % 3 else "test", "analysis_profile": "",
             "source": ""} for i in range(30)]
    first = stratified_sample(keys, 6, seed=1)
    assert first == stratified_sample(list(reversed(keys)), 6, seed=1)
    assert Counter("test" if int(s[1:]) % 3 == 0 else "train" for s in first) == {"train": 3, "test": 3}
    assert first != stratified_sample(keys, 6, seed=2)
