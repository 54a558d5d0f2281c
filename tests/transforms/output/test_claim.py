"""Whether a build or mix from elsewhere still writes an output: a long write stage is not silence."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from transforms.output import claim


def _aged(path: Path, hours: float) -> None:
    when = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)).timestamp()
    os.utime(path, (when, when))


def test_a_build_from_elsewhere_writing_its_split_files_counts_as_running(tmp_path):
    out = tmp_path / "out"
    began = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=3)
    marker = out / claim.WRITER
    marker.parent.mkdir(parents=True)
    marker.write_text(f"a satsft build is writing this output\ncommand build\nmachine 0f8a-elsewhere\npid 7\n"
                      f"pid start 9\nbegan {began:%Y-%m-%d %H:%M:%S} UTC\nhost launcher-vm-7\ndetached -\n")
    _aged(marker, 3)
    progress = out / "_satsft_spool" / "progress" / "w1.json"  # drawing ended 2 h ago
    progress.parent.mkdir(parents=True)
    progress.write_text("{}")
    _aged(progress, 2)
    shard = out / "parquet" / "train-00003-of-00040.parquet"  # its shard writers wrote a minute ago
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"PAR1")
    _aged(shard, 0.02)

    why, sure = claim.writing(str(out), take_over_after=1)
    assert why.startswith(f"{out} is being written: a satsft build into it") and not sure, why
    _aged(shard, 1.5)
    assert claim.writing(str(out), take_over_after=1) == ("", False), "silent for longer than 1 h: taken over"
    assert claim.writing(str(out), take_over_after=2)[0], "still within 2 h of its last shard"
    assert claim.last_write(str(out)) == datetime.datetime.fromtimestamp(shard.stat().st_mtime, datetime.timezone.utc)
