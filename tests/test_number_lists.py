"""The options that hold several numbers in one string, parsed by the ParamTypes of gancraft/cli/types.py."""

from __future__ import annotations

import pytest

from gancraft.cli.types import MAX_COUNT, FloatList, FloatPair, IntList, IntRanges
from gancraft.errors import GancraftError

from conftest import cli_fails, cli_invoke


def test_float_list():
    assert FloatList().parse("0.7, 0.3,", "--weights") == [0.7, 0.3]
    with pytest.raises(GancraftError, match=r"^--weights '1,x': expected comma-separated numbers$"):
        FloatList().parse("1,x", "--weights")
    with pytest.raises(GancraftError, match=r"^--weights '1,nan': expected finite numbers$"):
        FloatList().parse("1,nan", "--weights")


def test_int_list_and_its_words():
    t = IntList("direction indices", words=("dormant",))
    assert t.parse("511, 510", "--directions") == [511, 510]
    assert t.parse("dormant", "--directions") == "dormant"
    assert t.parse("dormant:m.csv", "--directions") == "dormant:m.csv"
    for bad in ("1,x", "", "dormantx", "1-3"):
        with pytest.raises(GancraftError, match=r"expected comma-separated direction indices, 'dormant' or"):
            t.parse(bad, "--directions")
    with pytest.raises(GancraftError, match=r"^--indices 'x': expected comma-separated direction indices$"):
        IntList("direction indices").parse("x", "--indices")


def test_int_ranges():
    t = IntRanges()
    assert t.parse("0,2-4, 7", "--channels") == [0, 2, 3, 4, 7]
    assert t.parse("-2,5", "--channels") == [-2, 5]  # a leading '-' is a sign
    with pytest.raises(GancraftError, match=r"^--channels '1,a-2': expected numbers like 0,1,2 or 0-3$"):
        t.parse("1,a-2", "--channels")
    with pytest.raises(GancraftError, match=r"^--channels ' , ': no numbers given$"):
        t.parse(" , ", "--channels")
    # refused before the range is built: a typo costs nothing
    with pytest.raises(GancraftError, match=f"more than {MAX_COUNT:,} numbers"):
        t.parse("0-4000000000", "--channels")
    assert len(t.parse(f"1-{MAX_COUNT}", "--channels")) == MAX_COUNT
    seeds = IntRanges((0, 9))
    assert seeds.parse("0-1,9", "--preview-seeds") == [0, 1, 9]
    for bad, end in (("8-10", 10), ("-1", -1)):
        with pytest.raises(GancraftError, match=f"^--preview-seeds '{bad}': {end} is outside 0-9$"):
            seeds.parse(bad, "--preview-seeds")


def test_float_pair():
    rng = FloatPair(":", ("LO", "HI"), "-3:3", distinct=True)
    assert rng.parse("-4:4.5", "--range") == (-4.0, 4.5)
    for bad in ("3", "1:2:3", "a:1"):
        with pytest.raises(GancraftError, match=r"expected two numbers LO:HI, e.g. -3:3$"):
            rng.parse(bad, "--range")
    for bad in ("1:1", "0:inf", "nan:1"):
        with pytest.raises(GancraftError, match=r"LO and HI must be finite and different$"):
            rng.parse(bad, "--range")
    xy = FloatPair(",", ("X", "Y"), "0.3,1")
    assert xy.parse("0,0", "--translate") == (0.0, 0.0)  # equal numbers are a place, not an empty range
    with pytest.raises(GancraftError, match=r"^--translate '1': expected two numbers X,Y, e.g. 0.3,1$"):
        xy.parse("1", "--translate")
    with pytest.raises(GancraftError, match=r"X and Y must be finite$"):
        xy.parse("inf,0", "--translate")


@pytest.mark.parametrize(
    "command, option, value, says",
    [
        ("average", "--weights", "1,x", "expected comma-separated numbers"),
        ("blend-layers", "--channels", "2,x", "expected numbers like 0,1,2 or 0-3"),
        ("blend-layers", "--preview-seeds", "1,5000000000", "5000000000 is outside 0-4294967295"),
        ("sefa", "--indices", "1,x", "expected comma-separated direction indices"),
        ("render", "--range", "3", "expected two numbers LO:HI"),
        ("expand", "--directions", "1,x", "'dormant' or 'dormant:...'"),
        ("sample", "--translate", "1", "expected two numbers X,Y"),
    ],
)
def test_each_option_refuses_in_one_line_naming_itself(ckpt, tmp_path, command, option, value, says):
    """The types are wired to the options: a bad value stops the command while its options are
    read (before any model is loaded), in one line that names the option and the value."""
    args = {
        "average": [ckpt, ckpt],
        "blend-layers": ["--low", ckpt, "--high", ckpt],
        "expand": [ckpt, "--task", f"kid:model:{ckpt}"],
    }.get(command, [ckpt])
    line = cli_fails(command, *args, option, value, "-o", tmp_path / "out.st")
    assert f"{option} {value!r}: " in line and says in line
    assert not (tmp_path / "out.st").exists()


def test_sefa_indices_beyond_the_directions(ckpt, tmp_path):
    line = cli_fails("sefa", ckpt, "-o", tmp_path / "d.st", "--sheet", tmp_path / "s.png", "--indices", "0,32")
    assert line.endswith("--indices: direction 32 is outside 0-31"), line
    assert (
        cli_invoke("sefa", ckpt, "-o", tmp_path / "d.st", "--sheet", tmp_path / "s.png", "--indices", "1,0").exit_code
        == 0
    )
