"""WriteManifest: the records of made and taken tiles, gathered per file in parts, give the bytes encode_tiles
gives them all at once."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from transforms.rebuild.manifest import TILES_PER_FILE, encode_tiles, tile_record, tiles_file
from transforms.rebuild.place import WriteManifest, _ManifestLinesFn


@pytest.mark.parametrize("max_values", [10_000, 2])
def test_manifest_files_hold_every_record_in_slot_order(tmp_path, monkeypatch, max_values):
    monkeypatch.setattr(_ManifestLinesFn, "MAX_VALUES", max_values)
    made = [tile_record(f"t{s}", "train", s, f"f{s}", "", [f"images/s0/t{s}.png"], 3, 0, "",
                        [("rows|caption|train", 1)]) for s in (7, 2, TILES_PER_FILE + 1)]
    taken = [tile_record(f"t{s}", "test", s, f"f{s}", "", [], 2, 1, "", []) for s in (5, 0, 3)]
    with TestPipeline() as p:
        _ = (p | "Made" >> beam.Create(made), p | "Taken" >> beam.Create(taken)) | WriteManifest(str(tmp_path))
    records = made + taken
    for rel in {tiles_file(r["slot"]) for r in records}:
        expected = encode_tiles([r for r in records if tiles_file(r["slot"]) == rel])
        assert (tmp_path / rel).read_bytes() == expected
