"""`satsft validate` over outputs damaged in the ways hand edits, other tools and cut-short copies damage them:
each damage is a finding naming the file, never a traceback (eval and preview send a user with a damaged
dataset to validate, so validate must get through it)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.review.validate import chat_item_problem, row_shape_problem, validate
from pipeline.sample.tree import write_sample_tree
from tests.conftest import run_cli
from transforms.output.tree import report_shape_problem

REPORT = "build_report.json"


@pytest.fixture(scope="module")
def every_format(tmp_path_factory) -> Path:
    """A small build in all four row formats, with stills (so the stills manifest is there)."""
    root = tmp_path_factory.mktemp("damage")
    write_sample_tree(str(root / "tree"), 8, seed=4, workers=1)
    run_cli("build", "--input", str(root / "tree"), "--output", str(root / "out"), "--tasks",
            "caption,grounding_all,cross_view", "--formats", "jsonl,parquet,llava,sharegpt")
    assert (root / "out" / "metadata/manifest/stills.jsonl").exists()
    return root / "out"


def _write(rel: str, text: str) -> Callable[[Path], None]:
    return lambda out: (out / rel).write_text(text)


def _edit_report(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        report = json.loads((out / REPORT).read_text())
        edit(report)
        (out / REPORT).write_text(json.dumps(report))
    return damage


def _edit_first_row(rel: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        lines = (out / rel).read_text().splitlines()
        row = json.loads(lines[0])
        edit(row)
        (out / rel).write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    return damage


def _append(glob: str, text: str) -> Callable[[Path], None]:
    def damage(out: Path) -> None:
        for path in sorted(out.glob(glob)):
            with path.open("a") as f:
                f.write(text)
    return damage


def _first_user_part(row: dict) -> dict:
    return next(m for m in row["messages"] if m["role"] == "user")["content"][0]


def _row_sidecars(out: Path) -> list[Path]:
    return sorted((out / "metadata" / "sft_metadata_rows").rglob("*.json"))


def _cut_sidecar(out: Path) -> None:
    first = _row_sidecars(out)[0]
    first.write_bytes(first.read_bytes()[:40])


def _swap_sidecar(out: Path) -> None:
    first, second = _row_sidecars(out)[:2]
    first.write_bytes(second.read_bytes())


def _rename_sidecar(out: Path) -> None:
    first = _row_sidecars(out)[0]
    first.rename(first.with_name("renamed.json"))


CARD_HEAD = "---\nconfigs:\n- config_name: default\n  data_files: "
DAMAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    # name: (damage, check that names it, words the finding holds)
    "report not JSON": (_write(REPORT, "{oops"), "report", "not valid JSON"),
    "report empty": (_write(REPORT, ""), "report", "not valid JSON"),
    "report a list": (_write(REPORT, "[]"), "report", "not a JSON object"),
    "report without rows": (_edit_report(lambda r: r.pop("rows")), "report", "rows.by_task_split"),
    "report rows a list": (_edit_report(lambda r: r["rows"].update(by_task_split=[])), "report", "rows.by_task_split"),
    "report total a word": (_edit_report(lambda r: r["rows"].update(total="x")), "report", "rows.total"),
    "report files a list": (_edit_report(lambda r: r.update(files=[])), "report", "files is not"),
    "report file count a word": (_edit_report(lambda r: r["files"]["jsonl"].update({"data/train.jsonl": "x"})),
                                 "report", "files is not"),
    "report file outside": (_edit_report(lambda r: r["files"]["jsonl"].update({"../../victim.jsonl": 1})), "report",
                            "'../../victim.jsonl', which is not a path inside the output"),
    "report without config": (_edit_report(lambda r: r.pop("config")), "report", "config is not"),
    "report folder limit a word": (_edit_report(lambda r: r["config"].update(max_files_per_dir="x")), "report",
                                   "max_files_per_dir"),
    "card header a list": (_write("README.md", "---\n- a\n---\nbody\n"), "card", "no list of configs"),
    "card configs a mapping": (_write("README.md", "---\nconfigs: {a: 1}\n---\n"), "card", "no list of configs"),
    "card config a word": (_write("README.md", "---\nconfigs: [abc]\n---\n"), "card", "not a mapping"),
    "card data_files a word": (_write("README.md", CARD_HEAD + "abc\n---\n"), "card", "data_files is not a list"),
    "card entry a word": (_write("README.md", CARD_HEAD + "[abc]\n---\n"), "card", "data_files entry"),
    # each of these ran for minutes and filled the memory (a config of 9**9 values printed in the finding)
    "card aliases of aliases": (_write("README.md", "---\nconfigs:\n  - " + "".join(
        f"&l{i} [{', '.join([f'*l{i - 1}' if i else 'x'] * 9)}]\n  - " for i in range(9)) + "*l8\n---\n"),
        "card", "more than 100,000 values once its aliases are expanded"),
    "card config a long list": (_write("README.md", "---\nconfigs: [[" + ", ".join(["abc"] * 5000) + "]]\n---\n"),
                                "card", "not a mapping (['abc', 'abc', 'abc', 'abc', ...])"),
    "card path a number": (_write("README.md", CARD_HEAD + "[{split: train, path: 5}]\n---\n"), "card",
                           "data_files entry"),
    "row messages not objects": (_edit_first_row("data/train.jsonl", lambda r: r.update(messages=[1, "x"])), "jsonl",
                                 "message 0 is not a role"),
    "row content a string": (_edit_first_row("data/train.jsonl", lambda r: r["messages"][-1].update(content="hi")),
                             "jsonl", "list of content parts"),
    "row content part a string": (_edit_first_row("data/train.jsonl",
                                                  lambda r: r["messages"][-1].update(content=["hi"])),
                                  "jsonl", "neither text nor image"),
    "row image a list": (_edit_first_row("data/train.jsonl", lambda r: _first_user_part(r).update(image=["a"])),
                         "jsonl", "an image part whose image is not a string"),
    "row task a number": (_edit_first_row("data/train.jsonl", lambda r: r["metadata"].update(task=5)), "jsonl",
                          "metadata.task"),
    "row sample id a list": (_edit_first_row("data/train.jsonl", lambda r: r["metadata"].update(sample_id=["a"])),
                             "jsonl", "metadata.sample_id"),
    "row image paths a word": (_edit_first_row("data/train.jsonl", lambda r: r["metadata"].update(image_paths="a")),
                               "jsonl", "metadata.image_paths"),
    "llava not a list": (_write("llava/train.json", "{}"), "llava", "not a list of rows"),
    "llava rows numbers": (_write("llava/train.json", "[1, 2]"), "llava", "row 0: not an object"),
    "llava turns a word": (_write("llava/train.json", '[{"conversations": "x"}]'), "llava", "conversations is not"),
    "llava value a number": (_write("llava/train.json", '[{"conversations": [{"from": "human", "value": 5}]}]'),
                             "llava", "conversations is not"),
    "llava images numbers": (_write("llava/train.json",
                                    '[{"images": [5], "conversations": [{"from": "human", "value": "<image>"}]}]'),
                             "llava", "images are not paths"),
    "sharegpt row a number": (_write("sharegpt/train.jsonl", "5\n"), "sharegpt", "row 0: not an object"),
    "sharegpt messages numbers": (_write("sharegpt/train.jsonl", '{"messages": [1]}\n'), "sharegpt",
                                  "messages is not"),
    "tiles manifest garbage": (_append("metadata/manifest/tiles-*.jsonl", "{oops\n"), "files",
                               "tiles-b00000.jsonl does not parse"),
    # a row sidecar file was only counted: one cut short, overwritten by another's or renamed passed
    "row sidecar cut short": (_cut_sidecar, "sidecars", "not JSON"),
    "row sidecar of another row": (_swap_sidecar, "sidecars", "does not name its row"),
    "row sidecar renamed": (_rename_sidecar, "sidecars", "named after no row (first: metadata/sft_metadata_rows/"),
    "stills manifest garbage": (_append("metadata/manifest/stills.jsonl", "[1]\n"), "files",
                                "stills.jsonl does not parse"),
}


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_each_damage_is_a_finding_not_a_traceback(every_format, tmp_path, name):
    damage, check, words = DAMAGES[name]
    out = tmp_path / "out"
    shutil.copytree(every_format, out)
    damage(out)
    findings, _ = validate(str(out))
    said = findings.by_check.get(check, [])
    assert any(words in line for line in said), (name, findings.lines())


def test_the_build_itself_validates(every_format):
    findings, checked = validate(str(every_format))
    assert findings.count == 0, findings.lines()
    assert checked["files"] >= 8


def test_a_damaged_report_is_one_line_for_every_reader(every_format, tmp_path):
    """validate names it; eval and preview stop on it with one line that sends the user to validate."""
    out = tmp_path / "out"
    shutil.copytree(every_format, out)
    (out / REPORT).write_text('{"rows": ')
    proc = run_cli("validate", str(out), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "report: 1 problem(s)" in proc.stdout and f"{REPORT} cannot be read: not valid JSON" in proc.stdout
    assert "run the build or mix again with --overwrite" in proc.stdout
    (out / REPORT).write_text('{"rows": [], "files": {}, "config": {}}')  # parses, but is no report
    for command in (("eval", str(out), "--baseline", "majority"), ("preview", str(out))):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == (f"satsft: error: {REPORT} cannot be read: rows.by_task_split is not a row "
                                       f"count per task and split; `satsft validate {out}` lists the damaged files")


def test_shapes_of_rows_reports_and_chat_items():
    row = {"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
                                                     {"type": "text", "text": "q"}]},
                        {"role": "assistant", "content": [{"type": "text", "text": "a"}]}],
           "metadata": {"sample_id": "s", "task": "caption", "split": "train", "image_paths": ["a.png"],
                        "analysis_image_path": ""}}
    assert row_shape_problem(row) == ""
    # a Parquet row carries both fields of a part, the other one null
    parquet_row = {**row, "messages": [{"role": "user", "content": [{"type": "text", "text": "q", "image": None}]}]}
    assert row_shape_problem(parquet_row) == ""
    assert row_shape_problem({**row, "metadata": {**row["metadata"], "analysis_image_path": None}}) == ""
    assert "neither text nor image" in row_shape_problem({**row, "messages": [{"role": "user", "content": [
        {"type": "video", "video": "v"}]}]})
    assert "metadata.split" in row_shape_problem({**row, "metadata": {**row["metadata"], "split": None}})
    report = {"rows": {"by_task_split": {"caption": {"train": 3}}, "total": 3}, "files": {"jsonl": {"d": 3}},
              "config": {}}
    assert report_shape_problem(report) == ""
    assert "outputs" in report_shape_problem({**report, "outputs": []})
    assert chat_item_problem({"image": "a.png", "conversations": [{"from": "human", "value": "<image>"}]},
                             "llava") == ""
    assert chat_item_problem({"images": ["a.png"], "messages": [{"role": "user", "content": "<image>"}]},
                             "sharegpt") == ""
    assert "images" in chat_item_problem({"image": 5, "conversations": []}, "llava")


def test_a_row_not_of_the_row_shape_is_one_line_for_eval_and_preview(every_format, tmp_path):
    """A JSONL row hand-edited out of shape: eval and preview stopped with a traceback from deep in their
    readers; now one line names the file, the line and what is wrong, and sends the user to validate."""
    out = tmp_path / "out"
    shutil.copytree(every_format, out)
    report = json.loads((out / REPORT).read_text())
    report["files"].pop("parquet")  # eval and preview read the JSONL rows then, as of a build in JSONL alone
    (out / REPORT).write_text(json.dumps(report))
    _edit_first_row("data/train.jsonl", lambda r: r.update(messages=[1]))(out)
    said = ("satsft: error: data/train.jsonl line 1 is not a row of satsft's shape: message 0 is not a role with a "
            f"list of content parts; `satsft validate {out}` lists the damaged files")
    for command in (("eval", str(out), "--baseline", "majority", "--split", "train"), ("preview", str(out))):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 1 and proc.stderr.strip() == said, proc.stderr


def _point_outside(row: dict, where: str) -> None:
    """Every image of ``row`` named as a file beside the dataset folder."""
    row["metadata"]["image_paths"] = [where for _ in row["metadata"]["image_paths"]]
    for message in row["messages"]:
        for part in message["content"]:
            if part["type"] == "image":
                part["image"] = where


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_rows_naming_files_outside_the_dataset_are_never_read(every_format, tmp_path, fmt):
    """A dataset from elsewhere (a Hub download) whose rows name `../secret.txt`: preview copied that file of the
    machine into its page (and beside it), eval --requests would send it to a model's server. Both stop with one
    line now, reading nothing; validate names the row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "data_set"
    shutil.copytree(every_format, out)
    (tmp_path / "secret.txt").write_text("SECRET")
    report = json.loads((out / REPORT).read_text())
    report["files"].pop("jsonl" if fmt == "parquet" else "parquet")  # the readers read this format's rows
    (out / REPORT).write_text(json.dumps(report))
    rel = "data/train.jsonl" if fmt == "jsonl" else sorted(report["files"]["parquet"])[0]
    if fmt == "jsonl":
        _edit_first_row(rel, lambda r: _point_outside(r, "../secret.txt"))(out)
    else:
        table = pq.read_table(out / rel)
        rows = table.to_pylist()
        _point_outside(rows[0], "../secret.txt")
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / rel)
    split = "train" if fmt == "jsonl" else rel.split("/")[-1].split("-")[0]
    page = tmp_path / "page"
    requests = ("--requests", str(tmp_path / "requests.jsonl"), "--model", "m", "--split", split)
    for command in (("preview", str(out), "--to", str(page)), ("eval", str(out), *requests)):
        proc = run_cli(*command, check=False)
        assert proc.returncode == 1 and "which is not a path inside the dataset (parent_traversal)" in proc.stderr, (
            command, proc.stderr)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "SECRET" in p.read_text(errors="replace")
                and p != tmp_path / "secret.txt"]
    findings, _ = validate(str(out))
    assert any("'../secret.txt', which is not a path inside the dataset" in line
               for line in findings.by_check.get(fmt, [])), findings.lines()


def test_images_that_link_out_of_the_dataset_are_never_read(every_format, tmp_path):
    """A clone of a dataset repository keeps links: a chip that is a link to a file of this machine was copied into
    preview's page and would have gone into eval's requests. Neither reads it now; validate names it. (A build
    writes no links: it copies or hard-links.)"""
    out = tmp_path / "data_set"
    shutil.copytree(every_format, out)
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    report = json.loads((out / REPORT).read_text())
    report["files"].pop("parquet")
    (out / REPORT).write_text(json.dumps(report))
    rows = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    chip = out / next(p for r in rows for p in r["metadata"]["image_paths"] if p.startswith("images/"))
    chip.unlink()
    chip.symlink_to(secret)
    page = tmp_path / "page"
    proc = run_cli("preview", str(out), "--to", str(page), "--n", "400")
    assert "cannot be read" in proc.stdout, proc.stdout
    proc = run_cli("eval", str(out), "--requests", str(tmp_path / "requests.jsonl"), "--model", "m", "--split",
                   "train", check=False)
    assert proc.returncode == 2 and "a link out of the dataset" in proc.stderr, proc.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()
                and "SECRET" in p.read_text(errors="replace") and p != secret]
    findings, _ = validate(str(out))
    assert any("are links out of the output (first: images/" in line for line in findings.by_check["images"])


def test_a_drawn_file_gone_is_a_finding_with_the_way_to_draw_it_again(every_format, tmp_path):
    """A row sidecar deleted by hand is a finding, with the way to draw it again: the next `--update` draws
    each tile whose files are gone (tests/test_update.py)."""
    out = tmp_path / "out"
    shutil.copytree(every_format, out)
    next(iter(sorted((out / "metadata" / "sft_metadata_rows").rglob("*.json")))).unlink()
    findings, _ = validate(str(out))
    assert any("row sidecars under" in line for line in findings.by_check["counts"]), findings.lines()
    assert findings.lines()[-1] == ("note: some of the analysis images, overlays or row sidecars the build drew are "
                                    "gone: `satsft build ... --update` draws their tiles again")
    assert findings.count == 1, "a note is not a problem"
