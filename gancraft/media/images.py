"""Image conversion, PNG output, grids, background writing and image-folder reading."""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import GancraftError
from ..io_util import atomic_write

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def to_uint8(img) -> np.ndarray:
    """Generator output (float, NCHW or CHW, nominally in [-1, 1]) to uint8 NHWC or HWC.

    Uses NVIDIA's mapping x * 127.5 + 128 then clamp and truncate, so saved images match
    stylegan2-ada-pytorch's generate.py byte for byte.
    """
    import torch

    if not isinstance(img, torch.Tensor) or img.ndim not in (3, 4):
        shape = tuple(img.shape) if hasattr(img, "shape") else type(img).__name__
        raise GancraftError(f"expected an image tensor shaped N x C x H x W or C x H x W, got {shape}")
    perm = (0, 2, 3, 1) if img.ndim == 4 else (1, 2, 0)
    out = (img.detach().float().permute(*perm) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return out.cpu().numpy()


def _as_rgb_hwc(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise GancraftError(f"{what}: expected uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise GancraftError(f"{what}: expected an H x W x C image with 1, 3 or 4 channels, got shape {arr.shape}")
    return arr


def save_png(array_hwc: np.ndarray, path: str | os.PathLike, force: bool = False, compress_level: int = 6) -> Path:
    """Write an H x W (x 1/3/4) uint8 image as PNG atomically; returns the path written."""
    arr = _as_rgb_hwc(array_hwc, str(path))
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    image = Image.fromarray(np.ascontiguousarray(arr))
    with atomic_write(path, force=force) as tmp:
        # The temporary name does not end in .png, so the format must be given.
        image.save(tmp, format="PNG", compress_level=compress_level)
    return Path(path)


def seed_filename(seed: int) -> str:
    """'seed0042.png': at least four digits, more when the seed needs them."""
    if int(seed) != seed or seed < 0:
        raise GancraftError(f"seed must be a non-negative integer, got {seed!r}")
    return f"seed{int(seed):04d}.png"


def make_grid(images: np.ndarray, rows: int, cols: int, pad: int = 0, pad_value: int = 0) -> np.ndarray:
    """Tile N x H x W x C uint8 images row-major into one (rows*H + (rows-1)*pad) x ... image.

    `pad` pixels of `pad_value` separate neighbouring cells (no outer border). Fewer than
    rows*cols images leave the trailing cells filled with `pad_value`.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise GancraftError(f"grid: expected N x H x W x C images, got shape {imgs.shape}")
    if rows < 1 or cols < 1 or pad < 0:
        raise GancraftError(f"grid: rows and cols must be >= 1 and pad >= 0, got {rows}x{cols}, pad {pad}")
    n, h, w, c = imgs.shape
    if n > rows * cols:
        raise GancraftError(f"grid: {n} images do not fit in {rows} rows x {cols} columns")
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), pad_value, dtype=imgs.dtype)
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = r * (h + pad), col * (w + pad)
        grid[y : y + h, x : x + w] = imgs[i]
    return grid


class ImageWriter:
    """Encode and write PNGs on background threads while the caller computes the next batch.

    `write()` blocks only when `max_pending` images are already queued, which bounds memory.
    The first error raised by a writer thread is re-raised in the caller at the next
    `write()` or at `close()`; `close()` waits for every queued image.
    """

    def __init__(
        self, workers: int | None = None, max_pending: int = 64, force: bool = False, compress_level: int = 6
    ) -> None:
        workers = workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gancraft-png")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._futures: list[Future] = []
        self._force = force
        self._compress_level = compress_level
        self._closed = False
        self.written: list[Path] = []  # in completion order

    def _done(self, future: Future) -> None:
        self._slots.release()
        if future.cancelled():
            return
        exc = future.exception()
        with self._lock:
            if exc is not None and self._error is None:
                self._error = exc
            elif exc is None:
                self.written.append(future.result())

    def _raise_pending(self) -> None:
        with self._lock:
            exc, self._error = self._error, None
        if exc is not None:
            raise exc

    def write(self, array_hwc: np.ndarray, path: str | os.PathLike) -> None:
        """Queue one image; the array is copied so the caller may reuse its buffer."""
        if self._closed:
            raise RuntimeError("ImageWriter is closed")
        self._raise_pending()
        arr = np.array(array_hwc, copy=True)
        self._slots.acquire()
        future = self._pool.submit(save_png, arr, path, self._force, self._compress_level)
        future.add_done_callback(self._done)
        self._futures.append(future)

    def close(self) -> None:
        """Wait for every queued image, then raise the first writer error if there was one."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True)
        self._raise_pending()

    def __enter__(self) -> "ImageWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # The caller's own error is the one to report: drop writes not yet started and
        # writer errors. Writes in progress finish; each is atomic, so none is left partial.
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ImageFolder:
    """Images found under a folder, read lazily in sorted order.

    `files` are the candidates whose header could be read; `skipped` collects (path, reason)
    for everything left out, at listing time and while decoding.
    """

    root: Path
    resolution: int | None
    files: list[Path]
    sizes: list[tuple[int, int]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, n: int) -> "ImageFolder":
        """The first `n` images in sorted order."""
        return dataclasses.replace(self, files=self.files[:n], sizes=self.sizes[:n], skipped=list(self.skipped))

    def __iter__(self) -> Iterator[tuple[Path, np.ndarray]]:
        """Yield (path, H x W x 3 uint8) for every image that decodes."""
        yielded = 0
        for path in self.files:
            try:
                arr = _load_rgb(path, self.resolution)
            # PIL reports a corrupt PNG chunk as SyntaxError
            except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
                self.skipped.append((path, f"cannot decode: {exc}"))
                continue
            yielded += 1
            yield path, arr
        if yielded == 0:
            raise GancraftError(f"{self.root}: none of the {len(self.files)} image files could be decoded")

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, list[Path]]]:
        """Yield (N x H x W x 3 uint8, paths) with N = batch_size except possibly the last."""
        if batch_size < 1:
            raise GancraftError(f"batch size must be >= 1, got {batch_size}")
        arrays: list[np.ndarray] = []
        paths: list[Path] = []
        for path, arr in self:
            arrays.append(arr)
            paths.append(path)
            if len(arrays) == batch_size:
                yield np.stack(arrays), paths
                arrays, paths = [], []
        if arrays:
            yield np.stack(arrays), paths


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: PIL's direct conversion would clip, so rescale.
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I") and arr.max() > 255 else 255.0
        if image.mode == "F":
            peak = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr, mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        # Cut-outs are usually meant to be seen on a white page; dropping alpha instead
        # exposes whatever colour the transparent pixels happen to store.
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _load_rgb(path: Path, resolution: int | None) -> np.ndarray:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
    if resolution is not None and image.size != (resolution, resolution):
        w, h = image.size
        if w != h:
            # Centre-crop to a square first so faces are not squashed.
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            image = image.crop((left, top, left + side, top + side))
        image = image.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _list_files(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    candidates: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in sorted(dirnames):
            if d.startswith("."):
                skipped.append((here / d, "hidden folder"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = here / name
            if name.startswith("."):
                skipped.append((p, "hidden file"))
            elif p.suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append((p, f"not an image file extension (expected {', '.join(IMAGE_EXTENSIONS)})"))
            else:
                candidates.append(p)
    key = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    return sorted(candidates, key=key), sorted(skipped, key=lambda s: key(s[0]))


def read_image_folder(path: str | os.PathLike, resolution: int | None = None) -> ImageFolder:
    """List the images under `path` (recursively, sorted) and check they can be used together.

    Headers are read up front, so a mix of sizes without `resolution`, or a folder without a
    single readable image, is refused before any long job starts. With `resolution`, images
    of another size are centre-cropped to square and resized with Lanczos. Greyscale,
    16-bit, palette and alpha images become RGB (alpha composited over white).
    """
    root = Path(path)
    if not root.exists():
        raise GancraftError(f"{root}: image folder does not exist")
    if not root.is_dir():
        raise GancraftError(f"{root}: is a file, expected a folder of images")
    if resolution is not None and (int(resolution) != resolution or resolution < 1):
        raise GancraftError(f"resolution must be a positive integer, got {resolution!r}")
    candidates, skipped = _list_files(root)
    files: list[Path] = []
    sizes: list[tuple[int, int]] = []
    for p in candidates:
        try:
            with Image.open(p) as image:
                size = image.size
                # exif_transpose swaps width and height for rotated photos. Only JPEG and
                # WebP keep EXIF in the header; asking a PNG for it would decode the pixels.
                if image.format in ("JPEG", "WEBP") and image.getexif().get(0x0112) in (5, 6, 7, 8):
                    size = (size[1], size[0])
        except (OSError, ValueError, SyntaxError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = "not a readable image" if isinstance(exc, UnidentifiedImageError) else f"unreadable: {exc}"
            skipped.append((p, reason))
            continue
        files.append(p)
        sizes.append(size)
    if not files:
        detail = f" ({len(skipped)} other files skipped)" if skipped else ""
        raise GancraftError(f"{root}: no readable images ({', '.join(IMAGE_EXTENSIONS)}) found{detail}")
    if resolution is None:
        for p, size in zip(files, sizes):
            if size != sizes[0]:
                raise GancraftError(
                    f"{p}: is {size[0]}x{size[1]} but {files[0]} is {sizes[0][0]}x{sizes[0][1]}; "
                    "give a resolution to resize them all"
                )
    return ImageFolder(
        root=root, resolution=None if resolution is None else int(resolution), files=files, sizes=sizes, skipped=skipped
    )
