"""What runs the build elsewhere agrees with the code: Flex Template metadata, the Dockerfile's Beam pin, every
DoFn and PTransform pickles, and the Dataflow job graph builds offline."""

from __future__ import annotations

import argparse
import json
import re

import apache_beam as beam
import tomllib
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.build.config import BuildConfig
from pipeline.build.graph import build_pipeline
from pipeline.build.options import BuildOptions
from tests.conftest import REPO
from transforms.analysis.tim import PROFILES
from transforms.output.formats import FORMAT_NAMES, ROW_SIDECAR_MODES
from transforms.output.tree import LAYOUTS
from transforms.splits.plan import SHARED_GROUND_POLICIES, SPLIT_UNITS
from transforms.tasks import TASK_NAMES

ALLOWED = {"tasks": TASK_NAMES, "profiles": tuple(PROFILES), "formats": FORMAT_NAMES,
           "leakage": ("reassign", "drop"), "tim_shift": ("varied", "fixed"), "row_sidecars": ROW_SIDECAR_MODES,
           "layout": LAYOUTS, "split_unit": SPLIT_UNITS, "shared_ground": SHARED_GROUND_POLICIES}


def _actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    BuildOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def _beam_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("apache-beam=="))


def test_flex_template_metadata_matches_the_options():
    meta = json.loads((REPO / "templates/metadata.json").read_text())
    params = {p["name"]: p for p in meta["parameters"]}
    actions = _actions()
    assert set(params) == set(actions)
    for name, action in actions.items():
        p = params[name]
        assert p["helpText"] == action.help and p["label"]
        assert p["isOptional"] == (name not in ("input", "output"))
        regexes = [re.compile(r) for r in p["regexes"]]
        ok = lambda v, rx=regexes: any(r.fullmatch(v) for r in rx)  # noqa: E731
        if action.type is not None and action.type.__name__ == "parse_bool":
            assert ok("true") and ok("false") and not ok("maybe")
        elif name in ALLOWED:
            assert all(ok(v) for v in ALLOWED[name]) and not ok("bogus")
            assert ok(",".join(ALLOWED[name][:2])) == (name in ("tasks", "profiles", "formats")), "lists only"
            assert ok(str(action.default))
        elif isinstance(action.default, float):  # a share
            assert ok(str(action.default)) and ok("0") and ok("1") and not ok("1.5") and not ok("-0.1")
        elif isinstance(action.default, int):
            assert ok(str(action.default)) and not ok("-1") and not ok("ten")
        else:
            assert ok("gs://bucket/path") and not ok("/local/path")


def test_dockerfile_pins_the_same_beam_and_checks_dependencies():
    docker = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BEAM_VERSION=(\S+)$", docker, re.M).group(1) == _beam_pin()
    assert "apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in docker
    assert "pip check" in docker and 'pip install --no-cache-dir ".[gcp]"' in docker
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/flex_main.py" in docker
    assert (REPO / "pipeline/flex_main.py").is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for package in project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert f"COPY {package} ./{package}" in docker, f"the image installs the package, so it needs {package}/"
    extras = project["project"]["optional-dependencies"]["gcp"]
    assert f"apache-beam[gcp]=={_beam_pin()}" in extras, "the gcp extra pins the same Beam"


class _CollectTransforms(beam.pipeline.PipelineVisitor):
    def __init__(self):
        self.transforms = []

    def visit_transform(self, node):
        self.transforms.append(node.transform)

    def enter_composite_transform(self, node):
        if node.transform is not None:
            self.transforms.append(node.transform)


def test_every_transform_and_dofn_pickles(sample_tree, tmp_path):
    config = BuildConfig.create(input=str(sample_tree), output=str(tmp_path / "out"), formats="jsonl,parquet",
                                embed_images=True, overlays=True, split_unit="ground",
                                shared_ground="drop")
    pipeline = build_pipeline(config, beam.Pipeline(options=PipelineOptions()))
    visitor = _CollectTransforms()
    pipeline.visit(visitor)
    assert len(visitor.transforms) > 50
    names = set()
    for transform in visitor.transforms:
        restored = pickler.loads(pickler.dumps(transform))
        assert type(restored) is type(transform)
        names.add(type(transform).__name__)
        fn = getattr(transform, "fn", None)
        if fn is not None:
            assert type(pickler.loads(pickler.dumps(fn))) is type(fn)
    assert {"ReadSidecars", "JoinOnTileStem", "GenerateRows", "WriteSplitFiles", "WriteOverlays",
            "JoinBasesOnSharedGround", "KeepGroundApart"} <= names
    pipeline.to_runner_api()  # what every portable runner and Dataflow serialise


def test_dataflow_job_graph_builds_offline():
    options = PipelineOptions([
        "--runner", "DataflowRunner", "--dry_run", "True", "--project", "fake-project", "--region", "us-central1",
        "--temp_location", "gs://fake-bucket/tmp", "--input", "gs://fake-bucket/tree", "--output",
        "gs://fake-bucket/out", "--formats", "jsonl,parquet,llava", "--split_unit", "ground",
        "--shared_ground", "drop"])
    config = options.view_as(BuildOptions).to_config(check_paths=False)  # the launcher checks; offline here
    result = build_pipeline(config, beam.Pipeline(options=options)).run()
    transforms = result.job.proto_pipeline.components.transforms
    names = {t.unique_name for t in transforms.values()}
    for step in ("ReadSidecars", "ExtractImageRefs", "ListChips", "JoinOnTileStem", "IndexStills", "AssignSplits",
                 "GenerateRows", "WriteSplitFiles", "WriteRowSidecars", "RenderAnalysisImages", "CopySourceImages",
                 "WriteRejects", "FindSharedGround", "JoinBasesOnSharedGround", "KeepGroundApart", "CountOutcomes",
                 "WriteReport"):
        assert step in names, step
    assert any(n.startswith("ReadSidecars/Match") for n in names)
    assert result.job.options.view_as(BuildOptions).output == "gs://fake-bucket/out"


# Fields of the Dataflow API's FlexTemplateRuntimeEnvironment that the example may set.
FLEX_ENVIRONMENT = {"numWorkers", "maxWorkers", "zone", "serviceAccountEmail", "tempLocation", "stagingLocation",
                    "machineType", "additionalExperiments", "network", "subnetwork", "workerRegion", "workerZone",
                    "sdkContainerImage", "ipConfiguration", "kmsKeyName", "additionalUserLabels", "launcherMachineType",
                    "enableStreamingEngine", "flexrsGoal", "diskSizeGb", "autoscalingAlgorithm",
                    "saveHeapDumpsToGcsPath", "dumpHeapOnOom", "streamingMode", "enableLauncherVmSerialPortLogging"}


def test_scheduler_example_launches_valid_parameters():
    """The Cloud Scheduler body passes only declared parameters, each accepted by metadata.json and the CLI."""
    body = json.loads((REPO / "templates/scheduler/launch-body.json").read_text())["launchParameter"]
    params = {p["name"]: p for p in json.loads((REPO / "templates/metadata.json").read_text())["parameters"]}
    for name, value in body["parameters"].items():
        assert name in params, f"{name} is not a template parameter"
        assert any(re.fullmatch(r, value) for r in params[name]["regexes"]), (name, value)
    assert set(body["environment"]) <= FLEX_ENVIRONMENT
    assert body["containerSpecGcsPath"].startswith("gs://") and body["jobName"]
    flags = [f"--{k}={v}" for k, v in body["parameters"].items()]  # how the Flex launcher hands them over
    config = PipelineOptions(flags).view_as(BuildOptions).to_config(check_paths=False)
    assert config.update and not config.overwrite and config.formats == ("jsonl", "parquet")
    script = (REPO / "templates/scheduler/create-job.sh").read_text()
    assert "flexTemplates:launch" in script and "launch-body.json" in script
