"""man/ is generated from the CLI; this keeps it in sync (regenerate: python -m gancraft.cli.manpage man/)."""

from pathlib import Path

from gancraft.cli.manpage import pages

MAN = Path(__file__).resolve().parent.parent / "man"


def test_man_pages_match_cli():
    want = pages()
    have = {p.name for p in MAN.glob("gancraft*.1")}
    assert have == set(want), "man/ is out of date: run python -m gancraft.cli.manpage man/"
    for name, text in want.items():
        assert (MAN / name).read_text() == text, f"man/{name} is out of date: run python -m gancraft.cli.manpage man/"


def test_every_subcommand_has_a_page_with_options():
    want = pages()
    assert "gancraft.1" in want
    for name, text in want.items():
        assert ".SH SYNOPSIS" in text and ".SH DESCRIPTION" in text
        if name != "gancraft.1":
            assert ".SH OPTIONS" in text
