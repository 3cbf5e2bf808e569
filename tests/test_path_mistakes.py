"""Paths that are the wrong kind of thing, whoever runs the tests (root included): a directory
where a file is read or written, a regular file where a folder must be, a missing run folder.
Each ends in exit code 2 and one line naming the parameter and the path, with nothing written."""

from __future__ import annotations

import pytest

from gancraft import save

from conftest import cli_fails, make_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("paths") / "m.st"
    save(make_tiny_checkpoint(), path)
    return path


def _snapshot(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", ["grid", "latents", "average-out", "sefa-out"])
def test_an_output_file_replaced_by_a_directory(ckpt, tmp_path, case):
    taken = tmp_path / "taken.out"
    taken.mkdir()
    args = {
        "grid": ("sample", ckpt, "--seeds", "0", "-o", tmp_path / "imgs", "--grid", taken),
        "latents": ("sample", ckpt, "--seeds", "0", "-o", tmp_path / "imgs", "--latents", taken),
        "average-out": ("average", ckpt, ckpt, "-o", taken),
        "sefa-out": ("sefa", ckpt, "-o", taken),
    }[case]
    before = _snapshot(tmp_path)
    line = cli_fails(*args)
    assert "taken.out" in line and "is a directory" in line
    assert {"grid": "--grid", "latents": "--latents"}.get(case, "--output") in line
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["inspect", "convert", "sample"])
def test_an_input_file_that_is_a_directory(tmp_path, command):
    folder = tmp_path / "model.st"
    folder.mkdir()
    args = {
        "inspect": (folder,),
        "convert": (folder, "-o", tmp_path / "x.st"),
        "sample": (folder, "--seeds", "0", "-o", tmp_path / "imgs"),
    }[command]
    line = cli_fails(command, *args)
    assert "model.st" in line and "directory" in line
    assert not (tmp_path / "x.st").exists() and not (tmp_path / "imgs").exists()


def test_an_output_folder_under_a_regular_file(ckpt, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    line = cli_fails("sample", ckpt, "--seeds", "0", "-o", blocker / "imgs")
    assert "blocker" in line
    assert blocker.read_text() == "not a folder"


def test_a_missing_run_folder_to_resume(tmp_path):
    (tmp_path / "imgs").mkdir()
    line = cli_fails("train", tmp_path / "imgs", "--resume", tmp_path / "no-such-run", "-o", tmp_path / "t.st")
    assert "--resume" in line and "no-such-run" in line and "does not exist" in line
    assert not (tmp_path / "t.st").exists()
