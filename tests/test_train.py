"""The training loop: learning signal, exact resume, divergence handling, and the `train` CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gancraft import load
from gancraft.errors import GancraftError
from gancraft.toy import write_dataset
from gancraft.train.data import ImageFolderData
from gancraft.train.loop import TrainingDiverged, TrainOptions, finish, latest_snapshot, run_dir_for, run_training
from gancraft.train.methods import ScratchMethod

from conftest import cli_invoke, tiny_configs


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return write_dataset("face", 16, seed=0, resolution=16, out_dir=tmp_path_factory.mktemp("faces") / "face")


def _opts(steps: int, snap_steps: int, **kw) -> TrainOptions:
    batch = kw.pop("batch", 4)
    return TrainOptions(kimg=steps * batch / 1000, batch=batch, snap_kimg=snap_steps * batch / 1000, seed=3, **kw)


def _method(faces: Path) -> ScratchMethod:
    g, d = tiny_configs(16)
    return ScratchMethod(ImageFolderData(faces, 16), g, d)


def _d_loss(D, real, fake) -> float:
    with torch.no_grad():
        return (F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()).item()


def test_steps_lower_discriminator_loss(faces: Path, tmp_path: Path):
    method = _method(faces)
    trainer = run_training(
        method, _opts(0 + 1, 100, lr_g=1e-6, lr_d=0.01), tmp_path / "run", progress=False, max_steps=0
    )
    real, _ = method.data.batch(16, 0, 0, 0, 1, torch.device("cpu"))
    with torch.no_grad():
        fake = trainer.G(torch.randn(16, trainer.G.z_dim), noise_mode="const")
    before = _d_loss(trainer.D, real, fake)
    for _ in range(6):
        trainer.train_step()
    after = _d_loss(trainer.D, real, fake)
    assert after < before - 0.05, (before, after)


def test_resume_matches_uninterrupted_run(faces: Path, tmp_path: Path):
    kw = dict(r1_interval=2, diffaug="color,translation,cutout")
    full = run_training(_method(faces), _opts(4, 2, **kw), tmp_path / "a", progress=False)
    run_training(_method(faces), _opts(4, 2, **kw), tmp_path / "b", progress=False, max_steps=3)
    # killed while snapshotting step 3 (its state file never written), leaving a torn file too
    (tmp_path / "b" / "state-000003.pt").unlink()
    (tmp_path / "b" / "snapshot-000004.st").write_bytes(b"torn")
    assert latest_snapshot(tmp_path / "b")[0] == 2
    resumed = run_training(_method(faces), TrainOptions(), tmp_path / "b", progress=False, resume=True)
    assert resumed.step == full.step == 4
    a = full.checkpoint().tensors
    b = resumed.checkpoint().tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def _tensors_equal(a, b) -> bool:
    ta, tb = a.checkpoint().tensors, b.checkpoint().tensors
    return set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_resume_can_change_gamma_and_lr_from_that_step(faces: Path, tmp_path: Path):
    """A change at step 0 gives exactly the run started with the new values: the new R1 weight and
    learning rates are used, not the ones the optimiser state was saved with."""
    new = dict(gamma=3.0, lr_g=0.004, lr_d=0.003)
    fresh = run_training(_method(faces), _opts(3, 3, r1_interval=1, **new), tmp_path / "fresh", progress=False)
    run_training(_method(faces), _opts(3, 3, r1_interval=1, gamma=0.1), tmp_path / "run", progress=False, max_steps=0)
    resumed = run_training(
        _method(faces), TrainOptions(), tmp_path / "run", progress=False, resume=True, resume_options=new
    )
    assert _tensors_equal(fresh, resumed)
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    assert stored["options"]["gamma"] == 0.1 and stored["options"]["lr_g"] == 0.002
    assert stored["changes"] == [
        {"step": 0, "option": "gamma", "from": 0.1, "to": 3.0},
        {"step": 0, "option": "lr_g", "from": 0.002, "to": 0.004},
        {"step": 0, "option": "lr_d", "from": 0.002, "to": 0.003},
    ]


def _drop_snapshots(run: Path, *steps: int) -> None:
    for s in steps:
        for f in (f"snapshot-{s:06d}.st", f"state-{s:06d}.pt"):
            (run / f).unlink(missing_ok=True)


def test_an_option_change_is_recorded_and_undone_with_its_snapshots(faces: Path, tmp_path: Path):
    kw = dict(r1_interval=1, gamma=0.1)
    plain = run_training(_method(faces), _opts(4, 2, **kw), tmp_path / "plain", progress=False)
    run_training(_method(faces), _opts(4, 2, **kw), tmp_path / "run", progress=False, max_steps=2)
    changed = run_training(
        _method(faces), TrainOptions(), tmp_path / "run", progress=False, resume=True, resume_options={"gamma": 5.0}
    )
    assert not _tensors_equal(plain, changed)  # the new weight was used
    out = finish(changed, tmp_path / "m.st", "train", {})
    entry = load(out).history[-1]["params"]
    assert entry["options"]["gamma"] == 0.1 and entry["options"]["kimg"] == 4 * 4 / 1000
    assert entry["changes"] == [{"step": 2, "option": "gamma", "from": 0.1, "to": 5.0}]
    # resumed again from step 2 with no options: the change made at step 2 stays
    _drop_snapshots(tmp_path / "run", 3, 4)
    again = run_training(_method(faces), TrainOptions(), tmp_path / "run", progress=False, resume=True)
    assert _tensors_equal(changed, again)
    # from step 0 it never happened: the run is the plain one again, and run.json forgets it
    _drop_snapshots(tmp_path / "run", 2, 4)
    undone = run_training(_method(faces), TrainOptions(), tmp_path / "run", progress=False, resume=True)
    assert _tensors_equal(plain, undone)
    assert "changes" not in json.loads((tmp_path / "run" / "run.json").read_text())


def test_resume_refuses_to_change_what_the_run_trains_with(faces: Path, tmp_path: Path):
    run_training(_method(faces), _opts(2, 1), tmp_path / "run", progress=False, max_steps=1)
    resume = dict(progress=False, resume=True)
    with pytest.raises(GancraftError, match=r"batch: 4 in the run, 8 now; a resumed run can change only gamma"):
        run_training(
            _method(faces), TrainOptions(), tmp_path / "run", **resume, resume_options={"batch": 8, "gamma": 1.0}
        )
    assert "changes" not in json.loads((tmp_path / "run" / "run.json").read_text())
    # the same value is no change
    run_training(_method(faces), TrainOptions(), tmp_path / "run", **resume, resume_options={"batch": 4})
    assert "changes" not in json.loads((tmp_path / "run" / "run.json").read_text())


def test_non_finite_loss_stops_and_keeps_last_good_snapshot(faces: Path, tmp_path: Path):
    method = _method(faces)
    real_batch = method.data.batch

    def poisoned(n, seed, step, rank, world, device):
        imgs, labels = real_batch(n, seed, step, rank, world, device)
        return (imgs * float("nan") if step >= 3 else imgs), labels

    method.data.batch = poisoned
    with pytest.raises(TrainingDiverged, match=r"step 4: .* not finite.*snapshot-000002\.st") as err:
        run_training(method, _opts(8, 2), tmp_path / "run", progress=False)
    assert latest_snapshot(tmp_path / "run")[0] == 2
    assert not load(tmp_path / "run" / "snapshot-000002.st").non_finite()
    # the hint names --lr-d only where D's rate was set apart from G's, as only train's --lr-d can
    assert str(err.value).endswith("and a lower --lr or --gamma)")
    with pytest.raises(TrainingDiverged) as err:
        run_training(method, _opts(8, 2, lr_d=0.001), tmp_path / "run2", progress=False)
    assert str(err.value).endswith("and a lower --lr, --lr-d or --gamma)")


def test_existing_run_folder_is_refused(faces: Path, tmp_path: Path):
    run_training(_method(faces), _opts(1, 1), tmp_path / "run", progress=False)
    with pytest.raises(Exception, match="already holds a training run"):
        run_training(_method(faces), _opts(1, 1), tmp_path / "run", progress=False)


def test_run_dir_for():
    """train, finetune, hyper, root (one per source) and expand all name their run folders so."""
    assert run_dir_for(Path("out") / "cat.v2.st") == Path("out") / "cat.v2-run"
    assert run_dir_for("out/cat.st", "runs/7") == Path("runs/7")


def test_train_cli(faces: Path, tmp_path: Path):
    out = tmp_path / "m.st"
    args = [
        "train",
        str(faces),
        "-o",
        str(out),
        "--resolution",
        "16",
        "--config",
        "tiny",
        "--kimg",
        "0.004",
        "--batch",
        "2",
        "--quiet",
    ]
    res = cli_invoke(*args)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    ckpt = load(out)
    assert ckpt.history[-1]["command"] == "train"
    assert ckpt.g_config.img_resolution == 16 and ckpt.g_config.w_dim == 64
    run = tmp_path / "m-run"
    assert (run / "grid-000002.png").exists() and (run / "state-000002.pt").exists()

    res = cli_invoke(*args, "--force")
    assert res.exit_code == 2 and "already holds a training run" in res.stderr

    assert json.loads((run / "run.json").read_text())["options"]["style_mixing"] == 0.9
    res = cli_invoke(*args[:3], str(tmp_path / "nomix.st"), *args[4:], "--style-mixing", "0")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "nomix-run" / "run.json").read_text())["options"]["style_mixing"] == 0
    assert load(out).d_config.mbstd_group_size == 4
    res = cli_invoke(*args[:3], str(tmp_path / "g2.st"), *args[4:], "--mbstd-group", "2")
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "g2.st").d_config.mbstd_group_size == 2
    assert json.loads((tmp_path / "g2-run" / "run.json").read_text())["method"]["d_config"]["mbstd_group_size"] == 2
    res = cli_invoke(*args[:3], str(tmp_path / "y.st"), *args[4:], "--style-mixing", "1.5")
    assert res.exit_code == 2 and "--style-mixing" in res.stderr and not (tmp_path / "y-run").exists()

    res = cli_invoke("train", faces, "-o", tmp_path / "x.st", "--resolution", "16", "--config", "nope")
    assert res.exit_code == 2 and "--config: unknown config 'nope'" in res.stderr
    res = cli_invoke("train", tmp_path / "missing", "-o", tmp_path / "x.st", "--resolution", "16")
    assert res.exit_code == 2 and "does not exist" in res.stderr


def test_g_ema_follows_g_with_the_configured_half_life(faces: Path, tmp_path: Path):
    # NVIDIA's G_ema update: ema <- g + beta * (ema - g), beta = 0.5 ** (batch / (ema_kimg * 1000))
    trainer = run_training(_method(faces), _opts(1, 100, ema_kimg=0.01), tmp_path / "run", progress=False, max_steps=0)
    assert trainer.ema_beta == pytest.approx(0.5 ** (4 / 10))
    with torch.no_grad():  # an EMA that differs from G, so that a swapped lerp shows
        for p in trainer.G_ema.parameters():
            p.add_(torch.randn_like(p))
    ema_before = [p.clone() for p in trainer.G_ema.parameters()]
    trainer.train_step()
    for before, ema, g in zip(ema_before, trainer.G_ema.parameters(), trainer.G.parameters()):
        torch.testing.assert_close(ema, g + trainer.ema_beta * (before - g), rtol=1e-6, atol=1e-6)
    for ema_buf, g_buf in zip(trainer.G_ema.buffers(), trainer.G.buffers()):
        assert torch.equal(ema_buf, g_buf)  # w_avg and the like are copied, not averaged


def test_one_discriminator_pass_over_fakes_and_reals_gives_the_two_passes_logits(faces: Path, tmp_path: Path):
    from gancraft.train.loop import _mbstd_groups

    trainer = run_training(_method(faces), _opts(1, 100, batch=8), tmp_path / "run", progress=False, max_steps=0)
    gen = torch.Generator().manual_seed(0)
    fake, real = torch.randn(8, 3, 16, 16, generator=gen), torch.randn(8, 3, 16, 16, generator=gen)
    with torch.no_grad():
        joint = trainer._d_pair(fake, None, real, None)
        apart = trainer._d(fake, None), trainer._d(real, None)
        # the minibatch-std groups of the joint batch hold fakes or reals, never both
        brighter = trainer._d_pair(fake, None, real + 3.0, None)
    for a, b in zip(joint, apart):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(brighter[0], joint[0], rtol=1e-5, atol=1e-5)
    # a batch whose group size would change when doubled (6 -> 3, 12 -> 4) takes two passes
    assert (_mbstd_groups(trainer.D, 6), _mbstd_groups(trainer.D, 12)) == (3, 4)
    with torch.no_grad():
        joint6 = trainer._d_pair(fake[:6], None, real[:6], None)
        apart6 = trainer._d(fake[:6], None), trainer._d(real[:6], None)
    for a, b in zip(joint6, apart6):
        assert torch.equal(a, b)


def test_resume_with_other_settings_names_what_differs(faces: Path, tmp_path: Path):
    run_training(_method(faces), _opts(1, 1), tmp_path / "run", progress=False)
    g, d = tiny_configs(16)
    wider = ScratchMethod(ImageFolderData(faces, 16), dataclasses.replace(g, channel_max=g.channel_max * 2), d)
    with pytest.raises(GancraftError) as err:
        run_training(wider, _opts(2, 1), tmp_path / "run", progress=False, resume=True)
    message = str(err.value)
    assert f"g_config.channel_max: {g.channel_max} in the run, {g.channel_max * 2} now" in message
    assert "d_config" not in message and len(message) < 300


@pytest.mark.parametrize("mixing, calls", [(0.0, 1), (1.0, 2)])
def test_style_mixing_draws_a_second_latent_for_every_mixed_batch(faces: Path, tmp_path: Path, mixing, calls):
    trainer = run_training(
        _method(faces), _opts(1, 100, style_mixing=mixing), tmp_path / "run", progress=False, max_steps=0
    )
    seen = []
    forward = trainer.G.mapping.forward
    trainer.G.mapping.forward = lambda *a, **k: seen.append(1) or forward(*a, **k)
    trainer._generate(torch.randn(4, trainer.G.z_dim), None, update_w_avg=False)
    assert len(seen) == calls


def test_train_cli_resume_with_a_new_gamma(faces: Path, tmp_path: Path):
    out, run = tmp_path / "m.st", tmp_path / "m-run"
    args = ["train", str(faces), "-o", str(out), "--resolution", "16", "--config", "tiny", "--batch", "2", "--quiet"]
    assert cli_invoke(*args, "--kimg", "0.004", "--gamma", "0.5").exit_code == 0
    res = cli_invoke(*args, "--kimg", "0.008", "--resume", str(run), "--batch", "4", "--force")
    assert res.exit_code == 2 and "batch: 2 in the run, 4 now" in res.stderr and "Traceback" not in res.output
    res = cli_invoke(*args, "--kimg", "0.008", "--resume", str(run), "--gamma", "0.05", "--force")
    assert res.exit_code == 0, res.output
    entry = load(out).history[-1]["params"]
    assert entry["options"]["gamma"] == 0.5
    assert entry["changes"] == [{"step": 2, "option": "gamma", "from": 0.5, "to": 0.05}]


def test_train_cli_lr_d_sets_ds_learning_rate_alone(faces: Path, tmp_path: Path):
    out, run = tmp_path / "m.st", tmp_path / "m-run"
    args = ["train", str(faces), "-o", str(out), "--resolution", "16", "--config", "tiny", "--batch", "2", "--quiet"]
    res = cli_invoke(*args, "--kimg", "0.004", "--lr", "0.003", "--lr-d", "0.001")
    assert res.exit_code == 0, res.output
    options = json.loads((run / "run.json").read_text())["options"]
    assert (options["lr_g"], options["lr_d"]) == (0.003, 0.001)
    res = cli_invoke(*args, "--kimg", "0.006", "--resume", str(run), "--lr-d", "0.0005", "--force")
    assert res.exit_code == 0, res.output
    assert load(out).history[-1]["params"]["changes"] == [{"step": 2, "option": "lr_d", "from": 0.001, "to": 0.0005}]
    # --lr alone sets both, on a resume as at the start
    res = cli_invoke(*args, "--kimg", "0.008", "--resume", str(run), "--lr", "0.004", "--force")
    assert res.exit_code == 0, res.output
    assert load(out).history[-1]["params"]["changes"][1:] == [
        {"step": 3, "option": "lr_g", "from": 0.003, "to": 0.004},
        {"step": 3, "option": "lr_d", "from": 0.0005, "to": 0.004},
    ]
    res = cli_invoke(*args[:3], str(tmp_path / "z.st"), *args[4:], "--kimg", "0.004", "--lr-d", "0")
    assert res.exit_code == 2 and "--lr-d must be positive, got 0.0" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "z-run").exists()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda r: "{not json", "Expecting property name"),
        (lambda r: json.dumps({"options": r["options"]}), "'method'"),
        (lambda r: json.dumps({**r, "options": {**r["options"], "lr": 0.1}}), "unknown options lr"),
        (lambda r: json.dumps({**r, "changes": [{"step": 1, "option": "batch", "from": 2, "to": 4}]}), "changes"),
    ],
)
def test_resume_refuses_a_damaged_run_json_naming_it(faces: Path, tmp_path: Path, damage, reason):
    out, run = tmp_path / "m.st", tmp_path / "m-run"
    args = ["train", str(faces), "-o", str(out), "--resolution", "16", "--config", "tiny", "--batch", "2", "--quiet"]
    assert cli_invoke(*args, "--kimg", "0.002").exit_code == 0
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(damage(record))
    res = cli_invoke(*args, "--kimg", "0.004", "--resume", str(run), "--force")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{run / 'run.json'}: not a run record gancraft wrote" in res.stderr and reason in res.stderr


def test_resume_to_a_new_length_drops_log_lines_past_the_snapshot(faces: Path, tmp_path: Path):
    run_training(_method(faces), _opts(4, 2), tmp_path / "run", progress=False, max_steps=3)
    (tmp_path / "run" / "state-000003.pt").unlink()  # killed while snapshotting step 3: it resumes from 2
    run_training(
        _method(faces), TrainOptions(), tmp_path / "run", progress=False, resume=True, resume_kimg=5 * 4 / 1000
    )
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]  # step 3, logged before the kill, is not there twice


def _net(ckpt, net: str) -> dict[str, torch.Tensor]:
    return ckpt.state_dict(net)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_train_init_starts_from_the_checkpoints_networks_and_continues_its_history(faces: Path, tmp_path: Path):
    from gancraft import save

    base = ["--resolution", "16", "--config", "tiny", "--batch", "2", "--quiet"]
    first = tmp_path / "first.st"
    assert cli_invoke("train", str(faces), "-o", str(first), "--kimg", "0.006", *base).exit_code == 0
    start = load(first)
    # after training, the training copy and the EMA differ, so a swapped source would show
    assert not _same(_net(start, "G"), _net(start, "G_ema"))

    out = tmp_path / "more.st"
    args = ["train", str(faces), "-o", str(out), "--kimg", "0.004", "--init", str(first), "--snap", "0.002", *base]
    res = cli_invoke(*args)
    assert res.exit_code == 0, res.output
    step0 = load(tmp_path / "more-run" / "snapshot-000000.st")
    for net in ("G", "G_ema", "D"):
        assert _same(_net(step0, net), _net(start, net)), net
    trained = load(out)
    assert not _same(_net(trained, "G"), _net(start, "G"))  # it trains from there
    assert [h["command"] for h in trained.history] == ["train", "train"]
    assert trained.history[0] == start.history[0]
    assert trained.history[1]["params"]["init"].endswith("first.st")
    assert trained.history[1]["inputs"][0]["path"].endswith("first.st")

    # --resume alone reads the run's --init again (its configs and history); another --init is refused
    other = tmp_path / "other.st"
    save(start, other)
    res = cli_invoke(*args[:6], "--init", str(other), "--resume", str(tmp_path / "more-run"), *base, "--force")
    assert res.exit_code == 2 and "the run was started with other settings: init" in res.stderr, res.output
    res = cli_invoke(*args[:6], "--resume", str(tmp_path / "more-run"), *base, "--force", "--kimg", "0.006")
    assert res.exit_code == 0, res.output
    resumed = load(out)
    assert [h["command"] for h in resumed.history] == ["train", "train"]
    assert resumed.history[0] == start.history[0]
    assert resumed.history[1]["params"]["init"].endswith("first.st")

    # a file without the training copy (as the bundled examples): G starts from its G_ema
    no_g = tmp_path / "no-g.st"
    save(dataclasses.replace(start, tensors={k: v for k, v in start.tensors.items() if not k.startswith("G.")}), no_g)
    res = cli_invoke("train", str(faces), "-o", str(tmp_path / "c.st"), "--kimg", "0.002", "--init", str(no_g), *base)
    assert res.exit_code == 0, res.output
    step0 = load(tmp_path / "c-run" / "snapshot-000000.st")
    assert _same(_net(step0, "G"), _net(start, "G_ema")) and _same(_net(step0, "D"), _net(start, "D"))

    first.unlink()  # the recorded --init is gone: refused, naming it
    res = cli_invoke(*args[:6], "--resume", str(tmp_path / "more-run"), *base, "--force", "--kimg", "0.008")
    assert res.exit_code == 2 and "first.st: no such file" in res.stderr and "Traceback" not in res.output, res.output


def test_train_init_is_recorded_so_a_resume_from_another_folder_finds_it(
    faces: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    base = ["--resolution", "16", "--config", "tiny", "--batch", "2", "--quiet", "--snap", "0.002"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert cli_invoke("train", str(faces), "-o", "first.st", "--kimg", "0.002", *base).exit_code == 0
    res = cli_invoke("train", str(faces), "-o", "more.st", "--kimg", "0.002", "--init", "first.st", *base)
    assert res.exit_code == 0, res.output
    run = tmp_path / "a" / "more-run"
    assert json.loads((run / "run.json").read_text())["method"]["init"] == str(tmp_path / "a" / "first.st")
    monkeypatch.chdir(tmp_path / "b")
    res = cli_invoke("train", str(faces), "-o", "more.st", "--resume", str(run), "--kimg", "0.004", *base)
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "b" / "more.st").history[-1]["params"]["init"] == str(tmp_path / "a" / "first.st")
    # the same file named by another relative path is the same --init
    res = cli_invoke(
        "train",
        str(faces),
        "-o",
        "more.st",
        "--resume",
        str(run),
        "--kimg",
        "0.006",
        "--force",
        "--init",
        "../a/first.st",
        *base,
    )
    assert res.exit_code == 0, res.output


def test_train_init_refuses_what_train_cannot_continue(faces: Path, tmp_path: Path):
    from gancraft import save
    from gancraft.checkpoint import Checkpoint
    from gancraft.nets.stylegan2 import Discriminator, Generator
    from gancraft.train.methods.start import conditional_from_unconditional

    g, d = tiny_configs(16)
    G, D = Generator(g), Discriminator(d)
    plain = Checkpoint.from_modules(G_ema=G, D=D)
    save(Checkpoint.from_modules(G_ema=G), tmp_path / "no-d.st")
    Gc, Dc, _ = conditional_from_unconditional(plain, 2)
    save(Checkpoint.from_modules(G_ema=Gc, D=Dc), tmp_path / "cond.st")
    save(plain, tmp_path / "plain.st")
    base = ["train", str(faces), "-o", str(tmp_path / "m.st"), "--config", "tiny", "--quiet", "--init"]
    for name, res_px, message in (
        ("no-d.st", "16", "has no discriminator"),
        ("cond.st", "16", "class-conditional"),
        ("plain.st", "32", "a 16 px model, but --resolution is 32"),
        ("missing.st", "16", "missing.st"),
    ):
        res = cli_invoke(*base, str(tmp_path / name), "--resolution", res_px)
        assert res.exit_code == 2 and message in res.stderr and "Traceback" not in res.output, (name, res.output)
        assert not (tmp_path / "m-run").exists()
