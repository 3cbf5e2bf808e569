import os

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft.errors import GancraftError
from gancraft.media import (
    ImageWriter,
    make_grid,
    read_image_folder,
    read_video_info,
    save_png,
    seed_filename,
    to_uint8,
    write_video,
)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------- images


def test_to_uint8_matches_nvidia_mapping():
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 0.999, 1.0, 3.0]).view(1, 1, 2, 4).repeat(2, 3, 1, 1)
    x[1] = -x[1]
    out = to_uint8(x)
    assert out.shape == (2, 2, 4, 3) and out.dtype == np.uint8
    # x * 127.5 + 128, clamped to [0, 255], truncated toward zero.
    np.testing.assert_array_equal(out[0, :, :, 0].ravel(), [0, 0, 64, 128, 166, 255, 255, 255])
    np.testing.assert_array_equal(out[1, :, :, 2].ravel(), [255, 255, 191, 128, 89, 0, 0, 0])
    chw = to_uint8(torch.zeros(3, 5, 7))
    assert chw.shape == (5, 7, 3) and (chw == 128).all()
    with pytest.raises(GancraftError, match="N x C x H x W"):
        to_uint8(torch.zeros(4, 4))


def test_seed_filename():
    assert seed_filename(42) == "seed0042.png"
    assert seed_filename(0) == "seed0000.png"
    assert seed_filename(123456) == "seed123456.png"
    with pytest.raises(GancraftError, match="non-negative"):
        seed_filename(-1)


def test_save_png_roundtrip_and_refuses_overwrite(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    out = save_png(img, tmp_path / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), img)
    with pytest.raises(GancraftError, match="already exists"):
        save_png(img[::-1], out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), img)
    save_png(img[::-1], out, force=True)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), img[::-1])
    with pytest.raises(GancraftError, match="uint8"):
        save_png(img.astype(np.float32), tmp_path / "b.png")
    assert _leftovers(tmp_path) == []


def test_make_grid_exact_placement():
    imgs = np.stack([np.full((2, 3, 3), 10 * (i + 1), np.uint8) for i in range(5)])
    imgs[:, 0, 0] = 200  # marks each cell's top-left corner
    grid = make_grid(imgs, rows=2, cols=3, pad=1, pad_value=7)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2, 3)
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = r * 3, c * 4
        assert (grid[y, x] == 200).all()
        assert (grid[y + 1, x : x + 3] == 10 * (i + 1)).all()
        assert (grid[y, x + 1 : x + 3] == 10 * (i + 1)).all()
    # Separators and the unused sixth cell carry the pad value.
    assert (grid[2, :] == 7).all()
    assert (grid[:, 3] == 7).all() and (grid[:, 7] == 7).all()
    assert (grid[3:, 8:] == 7).all()
    assert make_grid(imgs[:4], 2, 2).shape == (4, 6, 3)
    with pytest.raises(GancraftError, match="do not fit"):
        make_grid(imgs, 2, 2)


def test_image_writer_writes_everything(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    buf = np.empty((8, 8, 3), np.uint8)
    with ImageWriter(workers=2, max_pending=3) as writer:
        for i, img in enumerate(imgs):
            buf[...] = img  # the writer must copy: the caller reuses its buffer
            writer.write(buf, tmp_path / seed_filename(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == [seed_filename(i) for i in range(20)]
    assert sorted(writer.written) == sorted(tmp_path / seed_filename(i) for i in range(20))
    for i in range(20):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / seed_filename(i))), imgs[i])


def test_image_writer_propagates_errors(tmp_path):
    (tmp_path / "seed0003.png").write_bytes(b"existing")
    img = np.zeros((4, 4, 3), np.uint8)
    writer = ImageWriter(workers=2)
    for i in range(6):
        writer.write(img, tmp_path / seed_filename(i))
    with pytest.raises(GancraftError, match="seed0003.png.*already exists"):
        writer.close()
    assert (tmp_path / "seed0003.png").read_bytes() == b"existing"
    assert (tmp_path / "seed0005.png").exists()

    # An error surfaces at the next write() too, not only at close().
    writer = ImageWriter(workers=1)
    writer.write(np.zeros((4, 4), np.float32), tmp_path / "bad.png")
    # With one worker this runs only after the failed write and its bookkeeping are done.
    writer._pool.submit(lambda: None).result()
    with pytest.raises(GancraftError, match="uint8"):
        writer.write(img, tmp_path / "later.png")
    writer.close()
    assert _leftovers(tmp_path) == []


def test_image_writer_keeps_callers_error(tmp_path):
    with pytest.raises(KeyError):
        with ImageWriter(workers=1) as writer:
            writer.write(np.zeros((4, 4), np.float32), tmp_path / "bad.png")
            raise KeyError("caller")


def _make_folder(root):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "a_rgb.png")
    gray = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(root / "b_gray.png")
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:8, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(rgba, mode="RGBA").save(root / "c_rgba.png")
    (root / "sub").mkdir()
    Image.fromarray(np.full((32, 48, 3), 77, np.uint8)).save(root / "sub" / "d_big.jpg", quality=95)
    Image.fromarray(rgb).convert("P").save(root / "sub" / "e_palette.bmp")
    (root / "x.png").write_text("this is not a png")
    (root / "notes.txt").write_text("hello")
    return rgb, gray


def test_read_image_folder_converts_resizes_and_skips(tmp_path):
    rgb, gray = _make_folder(tmp_path)
    folder = read_image_folder(tmp_path, resolution=16)
    names = [p.relative_to(tmp_path).as_posix() for p in folder.files]
    assert names == ["a_rgb.png", "b_gray.png", "c_rgba.png", "sub/d_big.jpg", "sub/e_palette.bmp"]
    skipped = {p.name: reason for p, reason in folder.skipped}
    assert set(skipped) == {"x.png", "notes.txt"}
    assert "not a readable image" in skipped["x.png"]
    assert "extension" in skipped["notes.txt"]

    got = dict((p.name, arr) for p, arr in folder)
    for arr in got.values():
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(got["a_rgb.png"], rgb)
    np.testing.assert_array_equal(got["b_gray.png"], np.repeat(gray[..., None], 3, axis=2))
    assert (got["c_rgba.png"][:8] == [255, 0, 0]).all()
    assert (got["c_rgba.png"][8:] == 255).all()  # transparent over white
    assert np.abs(got["d_big.jpg"].astype(int) - 77).max() <= 3
    assert got["e_palette.bmp"].shape == (16, 16, 3)

    batches = list(folder.batches(2))
    assert [b.shape[0] for b, _ in batches] == [2, 2, 1]
    assert [p.name for _, paths in batches for p in paths] == [p.name for p in folder.files]


def test_read_image_folder_refusals(tmp_path):
    _make_folder(tmp_path)
    with pytest.raises(GancraftError, match="d_big.jpg: is 48x32 but .*a_rgb.png is 16x16"):
        read_image_folder(tmp_path)
    with pytest.raises(GancraftError, match="does not exist"):
        read_image_folder(tmp_path / "missing")
    with pytest.raises(GancraftError, match="is a file"):
        read_image_folder(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GancraftError, match="no readable images"):
        read_image_folder(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "y.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(GancraftError, match=r"no readable images.*1 other files skipped"):
        read_image_folder(junk)


def test_read_image_folder_skips_files_that_fail_to_decode(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    full = tmp_path / "b.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(full)
    full.write_bytes(full.read_bytes()[:150])  # header intact, pixel data cut off
    folder = read_image_folder(tmp_path)
    assert len(folder) == 2
    assert [p.name for p, _ in folder] == ["a.png"]
    assert [(p.name, r.startswith("cannot decode")) for p, r in folder.skipped] == [("b.png", True)]


def test_read_image_folder_applies_exif_rotation(tmp_path):
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = 250  # left half bright
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    Image.fromarray(np.zeros((16, 8, 3), np.uint8)).save(tmp_path / "tall.png")
    folder = read_image_folder(tmp_path)
    assert folder.sizes == [(8, 16), (8, 16)]
    arr = dict((p.name, a) for p, a in folder)["rot.jpg"]
    assert arr.shape == (16, 8, 3)
    # After a clockwise turn the bright left half ends up on top.
    assert arr[:8].mean() > 200 and arr[8:].mean() < 50


# ---------------------------------------------------------------- video


def _frames(n, w, h):
    # Every frame differs so no format may merge duplicates.
    return [np.full((h, w, 3), (i * 29) % 256, np.uint8) for i in range(n)]


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_video_roundtrip(tmp_path, ext):
    out = write_video(iter(_frames(9, 32, 24)), tmp_path / f"v{ext}", fps=12)
    assert read_video_info(out) == (9, 32, 24)
    assert _leftovers(tmp_path) == []


def test_video_odd_size_and_gray_frames(tmp_path):
    frames = [f[..., 0] for f in _frames(5, 21, 15)]
    assert read_video_info(write_video(frames, tmp_path / "odd.mp4", fps=5)) == (5, 22, 16)
    assert read_video_info(write_video(frames, tmp_path / "odd.gif", fps=5)) == (5, 21, 15)


def test_gif_loops_forever_with_fps_duration(tmp_path):
    out = write_video(_frames(4, 8, 8), tmp_path / "a.gif", fps=10)
    with Image.open(out) as im:
        assert im.info["loop"] == 0
        assert im.info["duration"] == 100


def test_frame_folder(tmp_path):
    frames = _frames(3, 7, 5)
    out = write_video(frames, tmp_path / "frames", fps=5)
    assert sorted(p.name for p in out.iterdir()) == ["frame00000.png", "frame00001.png", "frame00002.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "frame00002.png")), frames[2])
    assert read_video_info(out) == (3, 7, 5)
    with pytest.raises(GancraftError, match="already exists"):
        write_video(frames, out, fps=5)
    write_video(_frames(2, 7, 5), out, fps=5, force=True)
    assert read_video_info(out) == (2, 7, 5)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(GancraftError, match="keep.txt"):
        write_video(frames, out, fps=5, force=True)
    assert (out / "keep.txt").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["v.mp4", "v.gif", "frames"])
def test_video_failure_leaves_nothing(tmp_path, name):
    def frames():
        yield from _frames(3, 8, 8)
        yield np.zeros((6, 8, 3), np.uint8)

    with pytest.raises(GancraftError, match="frame 3 is 8x6 but frame 0 is 8x8"):
        write_video(frames(), tmp_path / name, fps=5)

    def crashing():
        yield from _frames(2, 8, 8)
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        write_video(crashing(), tmp_path / name, fps=5)
    assert list(tmp_path.iterdir()) == []


def test_video_bad_inputs(tmp_path):
    with pytest.raises(GancraftError, match="unsupported video extension '.avi'"):
        write_video(_frames(2, 8, 8), tmp_path / "v.avi")
    with pytest.raises(GancraftError, match="no frames"):
        write_video([], tmp_path / "v.mp4")
    with pytest.raises(GancraftError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "v.gif")
    with pytest.raises(GancraftError, match="does not exist"):
        write_video(_frames(2, 8, 8), tmp_path / "nope" / "v.mp4")
    with pytest.raises(GancraftError, match="does not exist"):
        write_video(_frames(2, 8, 8), tmp_path / "nope" / "frames")
    with pytest.raises(GancraftError, match="does not exist"):
        read_video_info(tmp_path / "missing.mp4")
    assert list(tmp_path.iterdir()) == []


_READ_ONLY_WRITE = """
import os, sys
import numpy as np
from gancraft.errors import GancraftError
from gancraft.media import write_video
folder, name = sys.argv[1], sys.argv[2]
frames = [np.full((8, 8, 3), i * 29, np.uint8) for i in range(2)]
try:
    write_video(frames, os.path.join(folder, name), fps=5)
    print("written")
except GancraftError as exc:
    print("error:", exc)
print("left:", os.listdir(folder))
"""


@pytest.mark.parametrize("name", ["v.mp4", "v.gif", "frames"])
def test_video_unwritable_folder(tmp_path, name):
    locked = tmp_path / "locked"
    locked.mkdir()
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        locked.chmod(0o500)
        try:
            with pytest.raises(GancraftError, match="writ"):
                write_video(_frames(2, 8, 8), locked / name, fps=5)
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)
        return
    # root ignores permission bits, so the folder is made read-only by a mount in a private mount
    # namespace (as in CI, which runs as root)
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): no way to make a read-only folder")
    mount = 'mount -t tmpfs -o ro,size=1m none "$0" && exec "$1" -c "$2" "$0" "$3"'
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", mount, str(locked), sys.executable, _READ_ONLY_WRITE, name],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0 and "mount" in r.stderr:
        pytest.skip(f"cannot mount a read-only folder here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("error:") and "writ" in lines[0] and lines[-1] == "left: []", r.stdout
