"""Recipes are checked before anything is read: each mistake is a usage error that names it."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import UsageError
from pipeline.mix.recipe import load_recipe, parse_recipe, parse_source_spec


@pytest.fixture
def foreign(tmp_path):
    d = tmp_path / "other"
    d.mkdir()
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    for name in ("train.jsonl", "test.jsonl"):
        (d / name).write_text(json.dumps(row) + "\n")
    return d


def test_hidden_files_of_a_source_folder_are_not_its_rows(foreign):
    """A folder copied from a Mac holds ._train.jsonl beside train.jsonl; Jupyter keeps checkpoint copies: each
    was read as rows (the AppleDouble file a reject per line, the checkpoint every row twice)."""
    (foreign / "._train.jsonl").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (foreign / ".ipynb_checkpoints").mkdir()
    (foreign / ".ipynb_checkpoints" / "train-checkpoint.jsonl").write_text((foreign / "train.jsonl").read_text())
    for path in (str(foreign), f"{foreign}/*.jsonl", f"{foreign}/**"):
        source = parse_recipe({"sources": [{"name": "o", "path": path}]}).sources[0]
        assert sorted(p.rsplit("/", 1)[1] for p in source.files) == ["test.jsonl", "train.jsonl"], path


def test_a_comma_in_a_specs_path_belongs_to_the_path(tmp_path):
    """A folder named runs,2024 could only be given in a recipe: the comma split the path in two."""
    assert parse_source_spec("name=o,path=runs,2024/sat,repeat=2") == {"name": "o", "path": "runs,2024/sat",
                                                                      "repeat": 2.0}
    with pytest.raises(UsageError, match="expected key=value pairs"):
        parse_source_spec("runs,name=o")
    with pytest.raises(UsageError, match="name given twice"):  # the last name won without a word
        parse_source_spec("name=o,path=p,name=q")


def test_a_spec_is_key_value_pairs_with_lists(foreign):
    assert parse_source_spec(f"name=o,path={foreign},repeat=2,split=train|test") == {
        "name": "o", "path": str(foreign), "repeat": 2.0, "where": {"split": ["train", "test"]}}
    recipe = load_recipe(None, [f"name=o,path={foreign},share=0.2", f"name=p,path={foreign}"])
    assert [s.name for s in recipe.sources] == ["o", "p"]
    assert recipe.sources[0].kind == "files" and len(recipe.sources[0].files) == 2
    assert recipe.sources[0].share == 0.2


@pytest.mark.parametrize(("recipe", "message"), [
    ({"seed": "x", "sources": []}, "seed must be an integer"),
    ({"sources": []}, "at least one source"),
    ({"seeds": 1}, "unknown recipe key"),
    ({"sources": [{"name": "a", "path": "{d}"}, {"name": "a", "path": "{d}"}]}, "unique"),
    ({"sources": [{"name": "a", "path": "{d}", "share": 0.5}]}, r"a repeat in its place \(e\.g\. name=a,repeat=1:"),
    ({"sources": [{"name": "a", "path": "{d}"}, {"name": "b", "path": "{d}", "share": 0.4},
                  {"name": "c", "path": "{d}", "share": 0.6}]}, "shares add up to 1; they must stay below 1"),
    ({"sources": [{"name": "a", "path": "{d}"}, {"name": "b", "path": "{d}", "share": 1.5}]}, "below 1"),
    ({"sources": [{"name": "a", "path": "{d}", "where": {"split": "validation"}}]}, "matches nothing"),
    ({"sources": [{"name": "a", "path": "{d}", "weight": 2}]}, "unknown key"),
    # each of these passed the recipe's checks and failed the job with a traceback
    ({"sources": [{"name": "a", "path": "{d}", "repeat": float("nan")}]}, "repeat must be a number, not nan"),
    ({"sources": [{"name": "a", "path": "{d}", "repeat": float("inf")}]}, "repeat must be a number, not inf"),
    ({"seed": 1 << 70, "sources": [{"name": "a", "path": "{d}"}]}, "seed must be an integer of at most 64 bits"),
])
def test_recipe_mistakes_are_usage_errors(foreign, recipe, message):
    text = json.dumps(recipe).replace("{d}", str(foreign))
    with pytest.raises(UsageError, match=message):
        parse_recipe(json.loads(text))


def test_a_bad_recipe_file_names_the_problem(tmp_path):
    with pytest.raises(UsageError, match="cannot read recipe"):
        load_recipe(str(tmp_path / "missing.yaml"), [])
    (tmp_path / "bad.yaml").write_text("seed: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_recipe(str(tmp_path / "bad.yaml"), [])


def _aliases_of_aliases(levels: int) -> str:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(f"  {line}" for line in lines)


@pytest.mark.parametrize(("text", "shown"), [
    # nine levels name 9**9 values in 1 KB: its error printed all of them (2 GB, 6 GB of memory, 47 s)
    ("seed: &s\n" + _aliases_of_aliases(9) + "\nsources: [{name: a, path: {d}}]", None),
    ("sources: [{name: a, path: {d}, where: &w {task: *w}}]", None),  # an alias inside what it names
    ("seed: [" + ", ".join(["long text"] * 3000) + "]\nsources: [{name: a, path: {d}}]", "not ['long text', "),
])
def test_recipes_that_expand_past_any_size_are_refused_at_once(foreign, tmp_path, text, shown):
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("{d}", str(foreign)))
    with pytest.raises(UsageError) as caught:
        load_recipe(str(path), [])
    message = str(caught.value)
    assert len(message) < 400, message[:400]
    assert (shown or "values once its YAML aliases are expanded") in message


@pytest.mark.parametrize("name", ["validation.jsonl", "test-00000-of-00001.parquet"])
def test_a_source_that_is_one_file_takes_its_split_from_its_name(tmp_path, name):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from transforms.mix.rows import split_of_path

    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "other" / name
    path.parent.mkdir()
    if name.endswith(".jsonl"):
        path.write_text(json.dumps(row) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist([{"messages": json.dumps(row["messages"])}]), path)
    recipe = parse_recipe({"sources": [{"name": "other", "path": str(path)}]})
    source = recipe.sources[0]
    assert source.kind == "files" and source.files == (str(path),)
    assert split_of_path(source.files[0], source.folder) == name.split(".")[0].split("-")[0]


def test_a_file_of_another_kind_is_refused_by_name(tmp_path):
    (tmp_path / "rows.csv").write_text("a,b\n")
    with pytest.raises(UsageError, match="is a file but not .parquet, .arrow, .jsonl"):
        parse_recipe({"sources": [{"name": "o", "path": str(tmp_path / "rows.csv")}]})


@pytest.mark.parametrize(("report", "said"), [("{oops", "not valid JSON"), ("[]", "not a JSON object"),
                                              ('{"rows": {}}', "rows.by_task_split")])
def test_a_build_whose_report_is_damaged_is_refused_by_name(tmp_path, report, said):
    """A source folder holding a build_report.json that is not one: a usage error naming the file and the way on,
    not a traceback from deep in the recipe."""
    build = tmp_path / "build"
    build.mkdir()
    (build / "build_report.json").write_text(report)
    with pytest.raises(UsageError, match=f"source 'b': build_report.json cannot be read: {said}.*satsft validate"):
        parse_recipe({"sources": [{"name": "b", "path": str(build)}]})
