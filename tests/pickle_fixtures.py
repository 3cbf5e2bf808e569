"""Builders of fake but structurally exact NVIDIA and TensorFlow StyleGAN2 network pickles.

Real NVIDIA pickles come from ``torch_utils.persistence``: every network and sub-network is
pickled as ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the class name, the source
of its module and the module's ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``,
``_init_args``, ``_init_kwargs``, hook tables...). TF pickles hold ``dnnlib.tflib.network.Network``
objects whose state is a dict of static kwargs, components and ``(name, ndarray)`` variables.
To produce byte streams with those exact global names, stand-in modules are registered in
``sys.modules`` only while pickling.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from gancraft.nets.config import DiscriminatorConfig, GeneratorConfig

FAKE_MODULE_SRC = "# stand-in for training/networks.py\nimport torch\nclass Generator(torch.nn.Module):\n    pass\n"
STYLEGAN3_MODULE_SRC = (
    "# stand-in for training/networks_stylegan3.py\nclass SynthesisInput(torch.nn.Module):\n    pass\n"
)


def _stand_in_modules() -> dict[str, types.ModuleType]:
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta: dict) -> Any:
        raise AssertionError("fixtures only pickle")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    util.EasyDict = EasyDict

    network = types.ModuleType("dnnlib.tflib.network")

    class Network:
        def __init__(self, state: dict) -> None:
            self._state = state

        def __getstate__(self) -> dict:
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    network.Network = Network

    mods = {name: types.ModuleType(name) for name in ("torch_utils", "dnnlib", "dnnlib.tflib")}
    mods.update({"torch_utils.persistence": persistence, "dnnlib.util": util, "dnnlib.tflib.network": network})
    return mods


_MODS = _stand_in_modules()
EasyDict = _MODS["dnnlib.util"].EasyDict
TFNetwork = _MODS["dnnlib.tflib.network"].Network
_reconstruct = _MODS["torch_utils.persistence"]._reconstruct_persistent_obj


@contextlib.contextmanager
def stand_in_modules() -> Iterator[None]:
    # NVIDIA's real modules may be loaded already (tests run with GANCRAFT_NVIDIA_SRC): set them
    # aside while the stand-ins are in place, and put them back afterwards
    real = {n: sys.modules[n] for n in _MODS if n in sys.modules and sys.modules[n] is not _MODS[n]}
    sys.modules.update(_MODS)
    try:
        yield
    finally:
        for name in _MODS:
            sys.modules.pop(name, None)
        sys.modules.update(real)


def dump(obj: Any, path: Path, protocol: int = 4) -> Path:
    with stand_in_modules(), open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


class Persistent:
    """Pickles exactly as a ``@persistence.persistent_class`` instance does."""

    def __init__(self, class_name: str, state: dict, module_src: str = FAKE_MODULE_SRC) -> None:
        self.meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self) -> tuple:
        return (_reconstruct, (self.meta,))


_MODULE_INTERNALS = set(torch.nn.Module().__dict__)


def persistent_tree(
    module: torch.nn.Module,
    init_kwargs: dict | None = None,
    module_src: str = FAKE_MODULE_SRC,
    class_name: str | None = None,
) -> Persistent:
    """A module as NVIDIA's persistence would pickle it: torch's own ``__dict__`` fields, children as records."""
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        if key not in _MODULE_INTERNALS:
            continue
        if key == "_modules":
            value = OrderedDict((n, persistent_tree(m, {}, module_src)) for n, m in value.items())
        elif key == "_parameters":
            value = OrderedDict(
                (n, torch.nn.Parameter(p.detach().clone(), requires_grad=False)) for n, p in value.items()
            )
        elif key == "_buffers":
            value = OrderedDict((n, None if b is None else b.detach().clone()) for n, b in value.items())
        elif isinstance(value, dict):
            value = type(value)()  # hook tables: empty, as in NVIDIA's snapshots
        state[key] = value
    state["_init_args"] = ()
    state["_init_kwargs"] = EasyDict(init_kwargs or {})
    return Persistent(class_name or type(module).__name__, state, module_src)


def nvidia_generator_kwargs(cfg: GeneratorConfig) -> dict:
    """How NVIDIA's train.py would have called ``Generator(...)`` for this architecture."""
    return dict(
        z_dim=cfg.z_dim,
        c_dim=cfg.c_dim,
        w_dim=cfg.w_dim,
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        mapping_kwargs=EasyDict(num_layers=cfg.mapping_layers),
        synthesis_kwargs=EasyDict(
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            num_fp16_res=cfg.num_fp16_res,
            conv_clamp=cfg.conv_clamp,
        ),
    )


def nvidia_discriminator_kwargs(cfg: DiscriminatorConfig) -> dict:
    return dict(
        c_dim=cfg.c_dim,
        img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        architecture="resnet",
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=cfg.num_fp16_res,
        conv_clamp=cfg.conv_clamp,
        cmap_dim=cfg.cmap_dim,
        block_kwargs=EasyDict(freeze_layers=0),
        mapping_kwargs=EasyDict(num_layers=cfg.mapping_layers),
        epilogue_kwargs=EasyDict(mbstd_group_size=cfg.mbstd_group_size),
    )


def nvidia_snapshot(
    G_ema: torch.nn.Module | None = None,
    G: torch.nn.Module | None = None,
    D: torch.nn.Module | None = None,
    module_src: str = FAKE_MODULE_SRC,
) -> dict:
    """The dict NVIDIA's training loop pickles into network-snapshot-*.pkl."""
    snap: dict[str, Any] = {"training_set_kwargs": EasyDict(path="datasets/x.zip", use_labels=False)}
    for name, mod in (("G", G), ("D", D), ("G_ema", G_ema)):
        if mod is None:
            continue
        kwargs = nvidia_discriminator_kwargs(mod.cfg) if name == "D" else nvidia_generator_kwargs(mod.cfg)
        snap[name] = persistent_tree(mod, kwargs, module_src)
    snap["augment_pipe"] = None
    return snap


# ---------------------------------------------------------------- TF


def _conv_to_tf(w: torch.Tensor) -> np.ndarray:
    # NVIDIA [out, in, kh, kw] -> TF [kh, kw, in, out]
    return w.detach().numpy().transpose(2, 3, 1, 0).copy()


def _dense_to_tf(w: torch.Tensor) -> np.ndarray:
    return w.detach().numpy().T.copy()


def tf_generator_variables(sd: dict[str, torch.Tensor], cfg: GeneratorConfig) -> dict[str, list]:
    """Own variables of the G, mapping and synthesis TF networks holding these NVIDIA weights."""
    a = lambda t: t.detach().numpy().copy()  # noqa: E731
    top = [("lod", np.zeros((), np.float32)), ("dlatent_avg", a(sd["mapping.w_avg"]))]
    mapping = []
    if cfg.c_dim:
        mapping += [
            ("LabelEmbed/weight", _dense_to_tf(sd["mapping.embed.weight"])),
            ("LabelEmbed/bias", a(sd["mapping.embed.bias"])),
        ]
    for i in range(cfg.mapping_layers):
        mapping += [
            (f"Dense{i}/weight", _dense_to_tf(sd[f"mapping.fc{i}.weight"])),
            (f"Dense{i}/bias", a(sd[f"mapping.fc{i}.bias"])),
        ]
    synthesis = []
    log2 = int(np.log2(cfg.img_resolution))
    for k in range(2 * log2 - 3):
        res = 2 ** ((k + 5) // 2)
        layer = "conv1" if k == 0 or k % 2 == 0 else "conv0"
        synthesis.append((f"noise{k}", a(sd[f"synthesis.b{res}.{layer}.noise_const"])[None, None]))

    def modconv(scope: str, prefix: str, flip: bool = False, noise: bool = True) -> list:
        w = _conv_to_tf(sd[prefix + ".weight"])
        if flip:
            w = w[::-1, ::-1].copy()
        out = [
            (f"{scope}/weight", w),
            (f"{scope}/mod_weight", _dense_to_tf(sd[prefix + ".affine.weight"])),
            (f"{scope}/mod_bias", a(sd[prefix + ".affine.bias"]) - 1),
        ]
        if noise:
            out.append((f"{scope}/noise_strength", a(sd[prefix + ".noise_strength"])))
        return out + [(f"{scope}/bias", a(sd[prefix + ".bias"]))]

    synthesis.append(("4x4/Const/const", a(sd["synthesis.b4.const"])[None]))
    synthesis += modconv("4x4/Conv", "synthesis.b4.conv1")
    synthesis += modconv("4x4/ToRGB", "synthesis.b4.torgb", noise=False)
    for r in (2**i for i in range(3, log2 + 1)):
        synthesis += modconv(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", flip=True)
        synthesis += modconv(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1")
        synthesis += modconv(f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb", noise=False)
    return {"": top, "mapping": mapping, "synthesis": synthesis}


def tf_discriminator_variables(sd: dict[str, torch.Tensor], cfg: DiscriminatorConfig) -> list:
    a = lambda t: t.detach().numpy().copy()  # noqa: E731
    out = []
    for r in cfg.block_resolutions:
        if r == cfg.img_resolution:
            out += [
                (f"{r}x{r}/FromRGB/weight", _conv_to_tf(sd[f"b{r}.fromrgb.weight"])),
                (f"{r}x{r}/FromRGB/bias", a(sd[f"b{r}.fromrgb.bias"])),
            ]
        for tf_name, nv in (("Conv0", "conv0"), ("Conv1_down", "conv1")):
            out += [
                (f"{r}x{r}/{tf_name}/weight", _conv_to_tf(sd[f"b{r}.{nv}.weight"])),
                (f"{r}x{r}/{tf_name}/bias", a(sd[f"b{r}.{nv}.bias"])),
            ]
        out.append((f"{r}x{r}/Skip/weight", _conv_to_tf(sd[f"b{r}.skip.weight"])))
    out += [
        ("4x4/Conv/weight", _conv_to_tf(sd["b4.conv.weight"])),
        ("4x4/Conv/bias", a(sd["b4.conv.bias"])),
        ("4x4/Dense0/weight", _dense_to_tf(sd["b4.fc.weight"])),
        ("4x4/Dense0/bias", a(sd["b4.fc.bias"])),
        ("Output/weight", _dense_to_tf(sd["b4.out.weight"])),
        ("Output/bias", a(sd["b4.out.bias"])),
    ]
    return out


def tf_network(
    name: str,
    func: str,
    static_kwargs: dict,
    variables: list,
    components: dict | None = None,
    build_module_src: str = "# stand-in for training/networks_stylegan2.py\n",
) -> Any:
    return TFNetwork(
        dict(
            version=4,
            name=name,
            static_kwargs=static_kwargs,
            components=components or {},
            build_module_src=build_module_src,
            build_func_name=func,
            variables=variables,
        )
    )


def tf_generator(
    G: torch.nn.Module,
    name: str = "G",
    extra_kwargs: dict | None = None,
    build_module_src: str = "# stand-in for training/networks_stylegan2.py\n",
) -> Any:
    cfg: GeneratorConfig = G.cfg
    v = tf_generator_variables(G.state_dict(), cfg)
    kwargs = dict(
        num_channels=cfg.img_channels,
        resolution=cfg.img_resolution,
        label_size=cfg.c_dim,
        latent_size=cfg.z_dim,
        dlatent_size=cfg.w_dim,
        mapping_layers=cfg.mapping_layers,
        fmap_base=cfg.channel_base // 2,
        fmap_max=cfg.channel_max,
        truncation_psi=0.5,
    )
    kwargs.update(extra_kwargs or {})
    mapping = tf_network("G_mapping", "G_mapping", kwargs, v["mapping"], build_module_src=build_module_src)
    synthesis = tf_network(
        "G_synthesis", "G_synthesis_stylegan2", kwargs, v["synthesis"], build_module_src=build_module_src
    )
    return tf_network(
        name, "G_main", kwargs, v[""], {"mapping": mapping, "synthesis": synthesis}, build_module_src=build_module_src
    )


def tf_discriminator(D: torch.nn.Module) -> Any:
    cfg: DiscriminatorConfig = D.cfg
    kwargs = dict(
        num_channels=cfg.img_channels,
        resolution=cfg.img_resolution,
        label_size=cfg.c_dim,
        fmap_base=cfg.channel_base // 2,
        fmap_max=cfg.channel_max,
        mbstd_group_size=cfg.mbstd_group_size,
    )
    return tf_network("D", "D_stylegan2", kwargs, tf_discriminator_variables(D.state_dict(), cfg))


def perturbed(module: torch.nn.Module, seed: int, bias_grid: int | None = None) -> torch.nn.Module:
    """Perturb every tensor (filters aside) so that a key mixed up in conversion cannot go unnoticed.

    With `bias_grid`, style biases are put on a 1/bias_grid grid so that formats storing
    ``bias - 1`` (TF) round-trip them exactly.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("resample_filter"):
                continue
            t.add_(0.1 * torch.randn(t.shape, generator=gen))
            if bias_grid is not None and name.endswith("affine.bias"):
                t.copy_(1 + torch.round((t - 1) * bias_grid) / bias_grid)
    return module.eval().requires_grad_(False)


def assert_same_tensors(ckpt: Any, net: str, module: torch.nn.Module) -> None:
    """The checkpoint's `net` holds exactly the module's tensors: names, order, dtypes, values."""
    sd, ref = ckpt.state_dict(net), module.state_dict()
    assert list(sd) == list(ref)
    for k, v in ref.items():
        assert sd[k].dtype == v.dtype, k
        assert torch.equal(sd[k], v), k
