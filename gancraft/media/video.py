"""Write frame sequences as mp4, gif or a folder of numbered PNGs, atomically."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import GancraftError
from ..io_util import atomic_write, check_output_path

VIDEO_FORMATS: tuple[str, ...] = (".mp4", ".gif", "folder (a path without an extension)")
_FRAME_PREFIX = "frame"


def _video_kind(path: Path) -> str:
    if path.is_dir() or str(path).endswith(("/", os.sep)) or path.suffix == "":
        return "dir"
    suffix = path.suffix.lower()
    if suffix in (".mp4", ".gif"):
        return suffix[1:]
    raise GancraftError(
        f"{path}: unsupported video extension {path.suffix!r}; use .mp4, .gif, "
        "or a path without an extension for a folder of PNG frames"
    )


def _frame_name(index: int) -> str:
    return f"{_FRAME_PREFIX}{index:05d}.png"


def _checked_frames(frames: Iterable[np.ndarray], path: Path) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """First frame, then an iterator over all frames as RGB uint8, each checked against the first."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise GancraftError(f"{path}: no frames to write")
    first = _rgb_frame(first, 0, path)

    def all_frames() -> Iterator[np.ndarray]:
        yield first
        for i, frame in enumerate(it, start=1):
            frame = _rgb_frame(frame, i, path)
            if frame.shape != first.shape:
                raise GancraftError(
                    f"{path}: frame {i} is {frame.shape[1]}x{frame.shape[0]} "
                    f"but frame 0 is {first.shape[1]}x{first.shape[0]}"
                )
            yield frame

    return first, all_frames()


def _rgb_frame(frame: np.ndarray, index: int, path: Path) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise GancraftError(f"{path}: frame {index} has dtype {arr.dtype}; frames must be uint8 (see to_uint8)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise GancraftError(f"{path}: frame {index} has shape {arr.shape}; expected H x W x 3")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    # Videos carry no alpha; keep the colour as stored.
    return np.ascontiguousarray(arr[:, :, :3])


def _pad_even(frame: np.ndarray) -> np.ndarray:
    # yuv420p halves chroma resolution, so libx264 needs even sides; repeating the last
    # row/column keeps the picture instead of rescaling it.
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_mp4(first: np.ndarray, frames: Iterator[np.ndarray], tmp: Path, fps: float, quality: float, bar) -> None:
    import imageio_ffmpeg

    h, w = _pad_even(first).shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        size=(w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_in="rgb24",
        pix_fmt_out="yuv420p",
        quality=quality,
        macro_block_size=1,
        ffmpeg_log_level="error",
        # The temporary name ends in .tmp, so ffmpeg cannot guess the container.
        output_params=["-f", "mp4", "-movflags", "+faststart"],
    )
    writer.send(None)
    try:
        for frame in frames:
            writer.send(_pad_even(frame))
            bar.update(1)
    finally:
        writer.close()


def _write_gif(frames: Iterator[np.ndarray], tmp: Path, fps: float, bar) -> None:
    images = []
    for frame in frames:
        images.append(Image.fromarray(frame))
        bar.update(1)
    # GIF delays are stored in hundredths of a second.
    duration = max(20, int(round(100.0 / fps)) * 10)
    images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)


def _make_temp_dir(parent: Path, name: str) -> Path:
    # Unlike tempfile.mkdtemp (always 0700), os.mkdir honours the umask, so the folder
    # ends up with the permissions the user expects once renamed into place.
    while True:
        tmp = parent / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def _write_dir(frames: Iterator[np.ndarray], out: Path, force: bool, bar) -> None:
    if out.exists():
        if not out.is_dir():
            raise GancraftError(f"{out}: is a file, expected a folder for the frames")
        if not force:
            raise GancraftError(f"{out}: already exists (use --force to replace it)")
        foreign = [p.name for p in out.iterdir() if not (p.name.startswith(_FRAME_PREFIX) and p.suffix == ".png")]
        if foreign:
            raise GancraftError(
                f"{out}: holds files other than {_FRAME_PREFIX}NNNNN.png ({foreign[0]}); refusing to replace it"
            )
    parent = out.parent
    if not parent.is_dir():
        raise GancraftError(f"{out}: folder {parent} does not exist or is not a folder")
    try:
        tmp = _make_temp_dir(parent, out.name)
    except OSError as exc:
        raise GancraftError(f"{out}: cannot write in {parent} ({exc.strerror})") from None
    old: Path | None = None
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / _frame_name(i), format="PNG")
            bar.update(1)
        if out.exists():
            # Move the old frames aside first so a failed swap can be undone.
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
            os.replace(out, old / "frames")
        os.replace(tmp, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old / "frames", out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_video(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float = 30.0,
    quality: float = 7,
    force: bool = False,
    progress: bool = False,
    total: int | None = None,
) -> Path:
    """Write H x W x 3 uint8 frames to `path`; returns the path written.

    The format follows the path: `.mp4` (H.264, yuv420p; odd sides are padded to even by
    repeating the last row/column), `.gif` (loops forever; `quality` is not used), or a path
    without an extension for a folder of `frame00000.png ...`. Output appears only once
    complete: an error, including a bad frame part-way through, leaves nothing behind.
    `quality` runs from 1 (small files) to 10 (near lossless). `progress` shows a bar on
    stderr; `total` sizes it when `frames` has no length.
    """
    out = Path(path)
    kind = _video_kind(out)
    if not fps > 0:
        raise GancraftError(f"fps must be > 0, got {fps}")
    if not 1 <= quality <= 10:
        raise GancraftError(f"video quality must be between 1 and 10, got {quality}")
    if kind != "dir":
        # Fail on a bad output path before pulling frames, which may be expensive to make.
        check_output_path(out, force=force)
    if total is None and hasattr(frames, "__len__"):
        total = len(frames)
    first, all_frames = _checked_frames(frames, out)
    with tqdm(total=total, file=sys.stderr, disable=not progress, unit="frame", desc=out.name, leave=False) as bar:
        if kind == "dir":
            _write_dir(all_frames, out, force, bar)
        else:
            with atomic_write(out, force=force) as tmp:
                if kind == "mp4":
                    _write_mp4(first, all_frames, tmp, float(fps), float(quality), bar)
                else:
                    _write_gif(all_frames, tmp, float(fps), bar)
    return out


def read_video_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(number of frames, width, height) of an mp4, a gif or a folder of PNG frames."""
    p = Path(path)
    if not p.exists():
        raise GancraftError(f"{p}: video does not exist")
    kind = _video_kind(p)
    try:
        if kind == "dir":
            names = sorted(q for q in p.iterdir() if q.name.startswith(_FRAME_PREFIX) and q.suffix == ".png")
            if not names:
                raise GancraftError(f"{p}: no {_FRAME_PREFIX}NNNNN.png files")
            with Image.open(names[0]) as im:
                return len(names), im.size[0], im.size[1]
        if kind == "gif":
            with Image.open(p) as im:
                return int(getattr(im, "n_frames", 1)), im.size[0], im.size[1]
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(p))
        try:
            meta = next(reader)
            n = sum(1 for _ in reader)
        finally:
            reader.close()
        w, h = meta["size"]
        return n, int(w), int(h)
    except (OSError, RuntimeError, StopIteration) as exc:
        raise GancraftError(f"{p}: cannot read video ({exc})") from None
