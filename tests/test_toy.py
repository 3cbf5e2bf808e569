import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from gancraft import toy
from gancraft.errors import GancraftError


def _factors(**values):
    base = {"yaw": 0.0, "size": 0.5, "hue": 0.3, "expression": 0.0, "background": 0.6}
    base.update(values)
    return {k: np.array([v]) for k, v in base.items()}


def _img(domain, resolution=64, **values):
    return np.asarray(toy.render(domain, _factors(**values), 0, resolution)).astype(np.float64)


def test_factor_ranges_and_determinism():
    a = toy.sample_factors(200, 7)
    b = toy.sample_factors(200, 7)
    c = toy.sample_factors(200, 8)
    assert set(a) == set(toy.FACTORS)
    for name, (lo, hi) in toy.FACTOR_RANGES.items():
        assert a[name].shape == (200,)
        assert a[name].min() >= lo and a[name].max() <= hi
        # The draws cover the range instead of sitting in one corner of it.
        assert a[name].max() - a[name].min() > 0.8 * (hi - lo)
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["yaw"], c["yaw"])


@pytest.mark.parametrize("resolution", [32, 64])
def test_render_batch_shapes_and_same_bytes(resolution):
    imgs, factors = toy.render_batch("dog", 5, seed=3, resolution=resolution)
    again, _ = toy.render_batch("dog", 5, seed=3, resolution=resolution)
    assert imgs.shape == (5, resolution, resolution, 3) and imgs.dtype == np.uint8
    assert factors["hue"].shape == (5,)
    np.testing.assert_array_equal(imgs, again)
    # Different factor draws give different images.
    assert len({im.tobytes() for im in imgs}) == 5


def test_domains_differ_more_than_small_factor_changes():
    f = toy.sample_factors(6, 11)
    nudged = {k: v.copy() for k, v in f.items()}
    nudged["yaw"] = np.clip(nudged["yaw"] + 0.1, -1, 1)
    nudged["size"] = np.clip(nudged["size"] + 0.05, 0, 1)
    imgs = {d: np.stack([np.asarray(toy.render(d, f, i, 32)) for i in range(6)]).astype(float) for d in toy.DOMAINS}
    within = np.mean(
        [
            np.abs(imgs[d] - np.stack([np.asarray(toy.render(d, nudged, i, 32)) for i in range(6)])).mean()
            for d in toy.DOMAINS
        ]
    )
    for i, d1 in enumerate(toy.DOMAINS):
        for d2 in toy.DOMAINS[i + 1 :]:
            between = np.abs(imgs[d1] - imgs[d2]).mean()
            assert between > 2 * within, (d1, d2, between, within)


def _dark_centroid_x(img, threshold=90):
    # Pupils are the darkest pixels in the upper-middle band of every domain.
    band = img[: int(img.shape[0] * 0.62)]
    dark = band.max(axis=2) < threshold
    assert dark.sum() > 0
    return np.nonzero(dark)[1].mean()


@pytest.mark.parametrize("domain", toy.DOMAINS)
def test_yaw_moves_the_eyes(domain):
    left = _dark_centroid_x(_img(domain, yaw=-1.0, hue=0.1))
    mid = _dark_centroid_x(_img(domain, yaw=0.0, hue=0.1))
    right = _dark_centroid_x(_img(domain, yaw=1.0, hue=0.1))
    assert left + 2 < mid < right - 2


@pytest.mark.parametrize("domain", toy.DOMAINS)
def test_size_hue_background_and_expression_change_the_image(domain):
    bg = np.asarray(toy.render(domain, _factors(), 0, 64))[1, 1].astype(int)
    small = _img(domain, size=0.0)
    large = _img(domain, size=1.0)
    count = lambda im: (np.abs(im - bg).sum(axis=2) > 30).sum()  # noqa: E731
    assert count(large) > 1.3 * count(small)

    # Hue tints the figure (fur, or hair for faces): compare the blue-minus-red balance over it.
    def figure_balance(hue):
        im = _img(domain, hue=hue, background=0.1)
        figure = np.abs(im - im[1, 1]).sum(axis=2) > 30
        return (im[..., 2] - im[..., 0])[figure].mean()

    assert figure_balance(0.62) > figure_balance(0.0) + 20

    assert not np.array_equal(_img(domain, background=0.0)[1, 1], _img(domain, background=0.5)[1, 1])
    smile = _img(domain, expression=1.0)
    frown = _img(domain, expression=-1.0)
    diff = np.abs(smile - frown).sum(axis=2) > 40
    rows = np.nonzero(diff.any(axis=1))[0]
    # Only the mouth changes, and it sits in the lower half of the head.
    assert diff.sum() > 10 and rows.min() > 32


def test_images_are_antialiased():
    img = np.asarray(toy.render("face", _factors(), 0, 32))
    # Supersampling leaves intermediate colours along edges: many more colours than primitives.
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 40


def test_write_dataset(tmp_path):
    out = tmp_path / "cats"
    toy.write_dataset("cat", 12, seed=5, resolution=32, out_dir=out)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["factors.csv"] + [f"img{i:05d}.png" for i in range(12)]
    imgs, factors = toy.render_batch("cat", 12, seed=5, resolution=32)
    for i in range(12):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"img{i:05d}.png")), imgs[i])
    with open(out / "factors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[3]["file"] == "img00003.png" and rows[3]["domain"] == "cat"
    assert float(rows[3]["yaw"]) == pytest.approx(factors["yaw"][3], abs=1e-6)

    digest = lambda d: hashlib.sha256(b"".join((d / n).read_bytes() for n in files)).hexdigest()  # noqa: E731
    other = tmp_path / "again"
    toy.write_dataset("cat", 12, seed=5, resolution=32, out_dir=other)
    assert digest(out) == digest(other)


def test_write_dataset_refuses_overwrite_and_bad_input(tmp_path):
    toy.write_dataset("face", 2, seed=0, resolution=32, out_dir=tmp_path)
    before = (tmp_path / "img00000.png").read_bytes()
    with pytest.raises(GancraftError, match="img00000.png.*already exists"):
        toy.write_dataset("face", 3, seed=1, resolution=32, out_dir=tmp_path)
    assert (tmp_path / "img00000.png").read_bytes() == before
    assert not (tmp_path / "img00002.png").exists()
    toy.write_dataset("face", 2, seed=1, resolution=32, out_dir=tmp_path, force=True)
    assert (tmp_path / "img00000.png").read_bytes() != before

    with pytest.raises(GancraftError, match="unknown toy domain 'horse'"):
        toy.render_batch("horse", 1, 0)
    with pytest.raises(GancraftError, match="resolution"):
        toy.render_batch("cat", 1, 0, resolution=4)
    with pytest.raises(GancraftError, match="missing 'yaw'"):
        toy.render("cat", {"size": np.zeros(1)}, 0)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(GancraftError, match="is a file"):
        toy.write_dataset("cat", 1, 0, 32, afile)


def test_a_narrowed_factor_leaves_the_others_as_they_were(tmp_path, capsys):
    full = toy.sample_factors(500, 4)
    narrow = toy.sample_factors(500, 4, {"yaw": (-0.15, 0.15)})
    assert narrow["yaw"].min() >= -0.15 and narrow["yaw"].max() <= 0.15 and narrow["yaw"].std() > 0.05
    np.testing.assert_allclose(narrow["yaw"], full["yaw"] * 0.15, atol=1e-12)  # the same draws, rescaled
    for name in toy.FACTORS[1:]:
        np.testing.assert_array_equal(narrow[name], full[name])

    imgs, drawn = toy.render_batch("face", 4, 4, ranges={"yaw": (-0.15, 0.15)})
    asked = toy.sample_factors(4, 4, {"yaw": (-0.15, 0.15)})
    for name in toy.FACTORS:
        np.testing.assert_array_equal(drawn[name], asked[name])
    np.testing.assert_array_equal(imgs[2], np.asarray(toy.render("face", asked, 2, 32)))

    toy.main(
        ["face", "6", "-o", str(tmp_path / "f"), "--seed", "4", "--range", "yaw=-0.15,0.15", "--range", "size=0.5,0.5"]
    )
    with open(tmp_path / "f" / "factors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(abs(float(r["yaw"])) <= 0.15 and float(r["size"]) == 0.5 for r in rows)

    for spec, message in (
        ("pose=0,1", "unknown toy factor 'pose'"),
        ("yaw=0.5,-0.5", "yaw range 0.5,-0.5: needs -1 <= low <= high <= 1"),
        ("size=0,2", "size range 0,2"),
        ("yaw=-0.1", "expected FACTOR=LOW,HIGH"),
        ("yaw=a,b", "expected FACTOR=LOW,HIGH"),
        ("yaw=nan,0", "expected FACTOR=LOW,HIGH"),
    ):
        with pytest.raises(SystemExit) as exc:
            toy.main(["face", "3", "-o", str(tmp_path / "bad"), "--range", spec])
        assert exc.value.code == 2 and message in capsys.readouterr().err, spec
        assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit) as exc:
        toy.main(["face", "3", "-o", str(tmp_path / "bad"), "--range", "yaw=-0.2,0.2", "--range", "yaw=0,0.1"])
    assert exc.value.code == 2 and "yaw already has a range; give each factor once" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
