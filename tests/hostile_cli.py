"""Every command x every numeric option x hostile values, as a table built from the click objects.

Each command has a cheap base invocation that succeeds; a case appends one option with one
hostile value. It must end either as the base does (exit 0, the paths it printed exist) or in
exit 2 with one line that names the option. Options come from the command objects, so a new
numeric option joins the table without anyone listing it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click
import numpy as np
import torch

from gancraft import save
from gancraft.cli.main import cli
from gancraft.cli.types import NumberText, primary_name
from gancraft.latent.files import Latents, save_latents
from gancraft.media.images import save_png

from conftest import cli_invoke

# what a careless or hostile user types where a number belongs
HOSTILE = ("nan", "inf", "-inf", "-1", "0", "1e30", "1000000000000", "4294967296", "0-4000000000", "")
# string options that hold numbers (seed lists, layer alphas); the numeric ParamTypes, lists and
# pairs among them (cli/types.py NumberText), are found by type
NUMERIC_STRINGS = {"--seeds", "--mix-rows", "--mix-cols", "--alpha"}
# commands whose numeric options are covered through another command's table (none yet) or that have none
NO_BASE = {"weights"}


def numeric_options(command: click.Command) -> list[str]:
    """The long name of every option of `command` that takes a number."""
    out = []
    for p in command.params:
        if not isinstance(p, click.Option) or p.is_flag:
            continue
        t = p.type
        long = primary_name(p)
        if isinstance(t, (click.types.IntParamType, click.types.FloatParamType, NumberText)) or long in NUMERIC_STRINGS:
            out.append(long)
    return out


def commands() -> dict[str, click.Command]:
    """'name' or 'group sub' -> command object, as the group loads them (number checks applied)."""
    ctx = click.Context(cli, info_name="gancraft")
    found = {}
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            found.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            found[name] = cmd
    return found


@dataclass
class Files:
    """The inputs the base invocations read, made once per table."""

    root: Path
    ckpt: Path
    other: Path
    union: Path
    images: Path
    latents: Path
    features: Path
    prompts: Path


class _Features(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def make_files(root: Path, make_checkpoint: Callable[..., object]) -> Files:
    save(make_checkpoint(seed=0), root / "a.st")
    save(make_checkpoint(seed=1), root / "b.st")
    save(
        make_checkpoint(
            seed=2, c_dim=2, domains={"cat": {"kind": "class", "class": 0}, "dog": {"kind": "class", "class": 1}}
        ),
        root / "union.st",
    )
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), images / f"seed{i:04d}.png")
    w = rng.standard_normal((8, 1, 32)).astype(np.float32)
    save_latents(
        root / "lat.npz", Latents(z=np.zeros((8, 0), np.float32), w=w, seeds=np.arange(8), domains=["a", "b"] * 4)
    )
    # `direction` reads the labels from the CSV beside the latents
    (root / "lat.csv").write_text("seed,smile\n" + "".join(f"{i},{i % 2}\n" for i in range(8)))
    torch.jit.save(torch.jit.script(_Features()), str(root / "features.pt"))
    (root / "prompts.txt").write_text("a sketch\na cartoon\n")
    return Files(
        root,
        root / "a.st",
        root / "b.st",
        root / "union.st",
        images,
        root / "lat.npz",
        root / "features.pt",
        root / "prompts.txt",
    )


TRAIN = ["--kimg", "0.004", "--batch", "2", "--quiet", "--device", "cpu"]


def base_invocations(f: Files, out: Path) -> dict[str, list[str]]:
    """Command -> arguments of a cheap run that succeeds, writing under `out` (a fresh folder)."""
    feats = ["--extractor", str(f.features)]
    table = {
        "inspect": [str(f.ckpt)],
        "convert": [str(f.ckpt), "-o", str(out / "c.st")],
        "sample": [str(f.ckpt), "--seeds", "0-1", "-o", str(out / "s")],
        "render": [str(f.ckpt), "--seeds", "0,1", "--frames", "3", "-o", str(out / "r.gif")],
        "average": [str(f.ckpt), str(f.other), "-o", str(out / "avg.st")],
        "blend-layers": ["--low", str(f.ckpt), "--high", str(f.other), "--switch", "8", "-o", str(out / "bl.st")],
        "sefa": [str(f.ckpt), "-o", str(out / "d.st")],
        "direction": ["--latents", str(f.latents), "-o", str(out / "dir.st")],
        "train": [str(f.images), "--resolution", "16", "-o", str(out / "t.st"), *TRAIN],
        "root": ["--root", str(f.ckpt), "--source", str(f.other), "-o", str(out / "rooted"), *TRAIN],
        "finetune": [
            str(f.union),
            "--domain",
            f"cat={f.ckpt}",
            "--domain",
            f"dog={f.other}",
            "-o",
            str(out / "ft.st"),
            *TRAIN,
        ],
        "expand": [str(f.ckpt), "--task", f"kid:model:{f.other}", "-o", str(out / "x.st"), *TRAIN],
        "hyper": [
            str(f.ckpt),
            "--prompts",
            str(f.prompts),
            "--steps",
            "1",
            "--batch",
            "2",
            "--width",
            "4",
            "--depth",
            "1",
            "-o",
            str(out / "h.st"),
            "--device",
            "cpu",
        ],
        "fid compare": [str(f.images), str(f.images), "--batch", "2", *feats],
        "fid stats": [str(f.images), "-o", str(out / "st.npz"), "--batch", "2", *feats],
    }
    return table


@dataclass
class Outcome:
    case: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float


def run(name: str, args: list[str]) -> tuple[int, str, str]:
    res = cli_invoke(*name.split(), *args)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(res.exception))
        return 99, res.stdout, res.stderr + tb
    return res.exit_code, res.stdout, res.stderr


def judge(name: str, option: str, code: int, stdout: str, stderr: str) -> str | None:
    """None when the outcome is one of the two allowed ones, else what went wrong.

    Progress lines may precede the error (training logs as it starts), but the error itself is
    one line, there is no traceback, and it names the option, so the user knows what to change.
    """
    if "Traceback" in stderr:
        return f"traceback: {stderr.strip()[-600:]}"
    if code == 2:
        errors = [line for line in stderr.strip().splitlines() if ": error: " in line]
        if len(errors) != 1 or not stderr.strip().endswith(errors[0]):
            return f"exit 2 without exactly one final error line: {stderr.strip()[-400:]}"
        if not errors[0].startswith(f"gancraft {name.split()[0]}: error: "):
            return f"exit 2 with a line not from gancraft: {errors[0]}"
        if option not in errors[0]:
            return f"exit 2 without naming {option}: {errors[0]}"
        return None
    if code == 0:
        printed = [Path(p) for p in stdout.split() if p.startswith("/")]
        missing = [str(p) for p in printed if not p.exists()]
        return f"exit 0 but printed paths are missing: {missing}" if missing else None
    return f"exit {code}: {stderr.strip()[-600:]}"


def left_behind(scratch: Path, stderr: str) -> list[str]:
    """What a refused case left in its output folder, apart from what its error names
    (a diverged run keeps its last good snapshot and says where)."""
    return sorted(p.name for p in scratch.iterdir() if str(p) not in stderr)


def run_table(
    files: Files,
    scratch: Path,
    values: tuple[str, ...] = HOSTILE,
    only: Callable[[str, str], bool] = lambda name, opt: True,
) -> tuple[list[str], list[Outcome]]:
    """Run every case; (failures, outcomes). `scratch` is emptied before each case."""
    failures: list[str] = []
    outcomes: list[Outcome] = []
    for name, cmd in commands().items():
        if name in NO_BASE:
            continue
        for option in numeric_options(cmd):
            if not only(name, option):
                continue
            for value in values:
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir()
                base = base_invocations(files, scratch)[name]
                args = _with_option(base, option, value)
                t0 = time.perf_counter()
                code, stdout, stderr = run(name, args)
                outcomes.append(Outcome(f"{name} {option} {value!r}", code, stdout, stderr, time.perf_counter() - t0))
                problem = judge(name, option, code, stdout, stderr)
                if problem is None and code == 2 and left_behind(scratch, stderr):
                    problem = f"exit 2 but left {left_behind(scratch, stderr)} behind"
                if problem:
                    failures.append(f"{name} {option} {value!r}: {problem}")
    return failures, outcomes


def _with_option(base: list[str], option: str, value: str) -> list[str]:
    # the case's value replaces the base's own, so `--batch 2` never overrides `--batch nan`
    args = list(base)
    if option in args:
        i = args.index(option)
        del args[i : i + 2]
    return [*args, option, value]
