"""Domains of multi-domain models, resolved from a checkpoint's domain table.

A domain table (``ckpt.domains``) maps a name to one of:

- ``{"kind": "class", "class": k}``: class-conditional union model; c is one-hot of size c_dim.
- ``{"kind": "base"}`` / ``{"kind": "repurposed", "direction": [...], "index": i, "distance": s}``:
  expanded model (Domain Expansion). A latent is projected off every repurposed direction
  (onto the base subspace, which passes through w_avg), then moved by s along its own direction.
- ``{"kind": "vector", "tensor": "domain_vectors.<name>", "modulation": "after-demod"}``:
  domain-vector model; the tensor scales every conv layer by (1 + d) along its input channels,
  in the recorded order (nets.stylegan2.MODULATION_ORDERS; entries without one were trained
  before the order was recorded, with "before-demod").
- ``{"kind": "hyper", "prompt": "<text>"}``: a training prompt of a `gancraft hyper` model; its
  domain vector is predicted from the CLIP embedding of the text, so resolving it needs CLIP
  weights. Any other text becomes a domain of such a model through `prompt_domain`. The order
  is ``extra["hyper"]["modulation"]``, with the same default.

Names may be composed with '+' ('sketch+sumo'): class vectors, shifts and style scales (of one
modulation order) add.
A conditional model without a table takes class indices as names ('3' or 'class3').
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import torch

from ..errors import GancraftError
from ..nets.stylegan2 import DEFAULT_MODULATION, MODULATION_ORDERS, stored_modulation
from .timing import frame_times

if TYPE_CHECKING:
    from .prompts import PromptVectors

# a PromptVectors, or a zero-argument function building one: CLIP then loads only if a prompt is resolved
PromptSource = Union["PromptVectors", Callable[[], "PromptVectors"]]

_CLASS_NAME = re.compile(r"^(?:class)?(\d+)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.\-]+")
_FOLDER_MAX = 80


@dataclass
class DomainSpec:
    """Everything that turns a plain latent into one of a domain: inputs to mapping, w transform, styles.

    `basis` (k x w_dim, orthonormal rows) spans the repurposed directions of an expanded model;
    w is projected off it, then `mean_component` (w_avg's part in that span) and `shift` are added.
    """

    name: str
    c: torch.Tensor | None = None
    style_scale: torch.Tensor | None = None
    basis: torch.Tensor | None = None
    mean_component: torch.Tensor | None = None
    shift: torch.Tensor | None = None
    folder: str | None = None  # set where `name` is free text (prompts) that is not itself a folder name
    modulation: str = DEFAULT_MODULATION  # how style_scale meets the conv layers

    @property
    def transforms_w(self) -> bool:
        return self.basis is not None or self.shift is not None

    def to(self, device: torch.device | str) -> "DomainSpec":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return DomainSpec(**moved)


def check_modulation_order(order: str, option: str = "--modulation-order") -> str:
    if order not in MODULATION_ORDERS:
        raise GancraftError(f"{option} {order!r}: expected one of {', '.join(MODULATION_ORDERS)}")
    return order


def domain_names(ckpt: Any) -> list[str]:
    """Names 'all' expands to: the domain table's, or the class indices of a conditional model."""
    if ckpt.domains:
        return list(ckpt.domains)
    c_dim = ckpt.g_config.c_dim
    return [f"class{i}" for i in range(c_dim)]


def is_multi_domain(ckpt: Any) -> bool:
    return bool(ckpt.domains) or ckpt.g_config.c_dim > 0


def lazy_prompt_vectors(
    ckpt: Any,
    clip_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    download: bool = False,
    clip: Any = None,
) -> Callable[[], "PromptVectors"]:
    """A function returning the checkpoint's PromptVectors, built (CLIP loaded) on the first call only."""
    built: list = []

    def get() -> "PromptVectors":
        if not built:
            from .prompts import PromptVectors

            built.append(PromptVectors(ckpt, clip_weights, device=device, clip=clip, download=download))
        return built[0]

    return get


def _prompt_getter(
    ckpt: Any, prompts: PromptSource | None, clip_weights: str | os.PathLike | None
) -> Callable[[], "PromptVectors"]:
    if prompts is None:
        return lazy_prompt_vectors(ckpt, clip_weights)
    if hasattr(prompts, "vectors"):
        return lambda: prompts
    return prompts


def resolve_domains(
    ckpt: Any,
    names: str | None,
    G: torch.nn.Module,
    option: str = "--domain",
    clip_weights: str | os.PathLike | None = None,
    prompts: PromptSource | None = None,
) -> list[DomainSpec]:
    """Resolve 'all', one name, 'a+b' or a comma list into specs; None picks the model's default.

    The default for a multi-domain model is every domain; for a plain model, one unnamed spec.
    Hyper-network domains need CLIP: `prompts` (a PromptVectors or a function making one) or
    `clip_weights`; CLIP is loaded once for all of them, and only if one is asked for.
    """
    get = _prompt_getter(ckpt, prompts, clip_weights)
    if names is None or names == "all":
        if not is_multi_domain(ckpt):
            return [DomainSpec(name="")]
        return [resolve_domain(ckpt, n, G, option, prompts=get) for n in domain_names(ckpt)]
    items = [n.strip() for n in names.split(",")]
    if any(not n for n in items):
        raise GancraftError(f"{option} {names!r}: empty domain name in the list")
    if len(set(items)) != len(items):
        raise GancraftError(f"{option} {names!r}: a domain appears more than once")
    return [resolve_domain(ckpt, n, G, option, prompts=get) for n in items]


def resolve_domain(
    ckpt: Any,
    name: str,
    G: torch.nn.Module,
    option: str = "--domain",
    clip_weights: str | os.PathLike | None = None,
    prompts: PromptSource | None = None,
) -> DomainSpec:
    """One domain (or an 'a+b' composition) of `ckpt` as a DomainSpec for generator `G`."""
    where = f"{ckpt.path}: " if getattr(ckpt, "path", None) else ""
    if not is_multi_domain(ckpt):
        raise GancraftError(f"{option} {name!r}: {where}model has a single domain (no domain table, no classes)")
    parts = [p.strip() for p in name.split("+")]
    if any(not p for p in parts):
        raise GancraftError(f"{option} {name!r}: empty part in a '+' composition")
    get = _prompt_getter(ckpt, prompts, clip_weights)
    specs = [_resolve_one(ckpt, p, G, option, where, get) for p in parts]
    out = specs[0]
    for s in specs[1:]:
        out = _compose(out, s)
    return replace(out, name=name, folder=prompt_folder_name(name) if any(s.folder for s in specs) else None)


def prompt_folder_name(text: str) -> str:
    """A folder name for free text: runs of other characters become '_', at most 80 characters."""
    name = _UNSAFE_RUN.sub("_", text.strip()).strip("._")[:_FOLDER_MAX].rstrip("._")
    return name or "prompt"


def prompt_domain(
    ckpt: Any,
    prompt: str,
    G: torch.nn.Module,
    clip_weights: str | os.PathLike | None = None,
    prompts: PromptSource | None = None,
    option: str = "--prompt",
) -> DomainSpec:
    """The domain a hyper-network model predicts for any text, seen in training or not."""
    from .hyper import has_hyper

    if not has_hyper(ckpt):
        where = f"{ckpt.path}: " if getattr(ckpt, "path", None) else ""
        raise GancraftError(
            f"{option} {prompt!r}: {where}model holds no hyper-network (train one with `gancraft hyper`)"
        )
    if not isinstance(prompt, str) or not prompt.strip():
        raise GancraftError(f"{option}: expected non-empty text")
    pv = _prompt_getter(ckpt, prompts, clip_weights)()
    return DomainSpec(
        name=prompt,
        style_scale=_prompt_vector(pv, prompt, G),
        folder=prompt_folder_name(prompt),
        modulation=pv.modulation,
    )


def _prompt_vector(pv: "PromptVectors", prompt: str, G: torch.nn.Module) -> torch.Tensor:
    vec = pv.vector(prompt).detach().to("cpu", torch.float32).reshape(-1)
    if vec.numel() != G.synthesis.style_dim:
        raise GancraftError(
            f"hyper-network predicts {vec.numel()} values, the generator's style width is {G.synthesis.style_dim}"
        )
    return vec


def prompt_morph_vectors(
    pv: "PromptVectors", prompts: Sequence[str], frames: int, loop: bool = False, space: str = "vector"
) -> torch.Tensor:
    """[frames, style_dim] domain vectors moving through `prompts` in order (see PromptVectors.interpolate).

    Frames are timed like every other morph (`frame_times`): without loop the first and last
    frames are exactly the first and last prompts' vectors.
    """
    if len(prompts) < 2:
        raise GancraftError("--prompts: a morph needs at least two prompts")
    times = frame_times(len(prompts), frames, loop)
    out = []
    # one hyper-network call per keyframe pair, with all of that pair's frames
    start = 0
    while start < len(times):
        i, j, _ = times[start]
        end = start
        while end < len(times) and times[end][:2] == (i, j):
            end += 1
        ts = [t for _, _, t in times[start:end]]
        out.append(pv.interpolate(prompts[i], prompts[j], ts, space=space).detach().to("cpu", torch.float32))
        start = end
    return torch.cat(out)


def _resolve_one(
    ckpt: Any, name: str, G: torch.nn.Module, option: str, where: str, prompts: Callable[[], "PromptVectors"]
) -> DomainSpec:
    table = ckpt.domains or {}
    c_dim = ckpt.g_config.c_dim
    if not table:
        m = _CLASS_NAME.match(name)
        if not m or int(m.group(1)) >= c_dim:
            raise GancraftError(
                f"{option} {name!r}: {where}model has classes 0-{c_dim - 1} (use a class index or 'all')"
            )
        return DomainSpec(name=f"class{int(m.group(1))}", c=_one_hot(int(m.group(1)), c_dim))
    if name not in table:
        raise GancraftError(f"{option} {name!r}: {where}no such domain (known: {', '.join(table)}, all)")
    entry = table[name]
    kind = entry.get("kind") if isinstance(entry, dict) else None
    basis, mean_component = _repurposed_basis(table, G, where)
    if kind == "class":
        k = entry.get("class")
        if not isinstance(k, int) or not 0 <= k < c_dim:
            raise GancraftError(f"{where}domain {name!r} has class {k!r}, model has c_dim {c_dim}")
        return DomainSpec(name=name, c=_one_hot(k, c_dim))
    if kind == "base":
        return DomainSpec(
            name=name, basis=basis, mean_component=mean_component, shift=None if basis is None else torch.zeros(G.w_dim)
        )
    if kind == "repurposed":
        d = _direction(entry, name, G.w_dim, where)
        dist = entry.get("distance")
        if not isinstance(dist, (int, float)):
            raise GancraftError(f"{where}domain {name!r} has no numeric 'distance'")
        return DomainSpec(name=name, basis=basis, mean_component=mean_component, shift=float(dist) * d)
    if kind == "vector":
        key = entry.get("tensor")
        if key not in ckpt.tensors:
            raise GancraftError(f"{where}domain {name!r} names tensor {key!r}, which the checkpoint lacks")
        vec = ckpt.tensors[key].to(torch.float32).reshape(-1)
        if vec.numel() != G.synthesis.style_dim:
            raise GancraftError(
                f"{where}domain {name!r}: tensor {key} has {vec.numel()} values, "
                f"the generator's style width is {G.synthesis.style_dim}"
            )
        return DomainSpec(name=name, style_scale=vec, modulation=stored_modulation(entry, f"{where}domain {name!r}: "))
    if kind == "hyper":
        text = entry.get("prompt")
        if not isinstance(text, str) or not text.strip():
            raise GancraftError(f"{where}domain {name!r} (hyper) has no prompt text")
        pv = prompts()
        return DomainSpec(
            name=name,
            style_scale=_prompt_vector(pv, text, G),
            folder=prompt_folder_name(name),
            modulation=pv.modulation,
        )
    raise GancraftError(
        f"{where}domain {name!r} has unknown kind {kind!r} (expected class, base, repurposed, vector or hyper)"
    )


def _one_hot(k: int, c_dim: int) -> torch.Tensor:
    c = torch.zeros(c_dim)
    c[k] = 1
    return c


def _direction(entry: dict, name: str, w_dim: int, where: str) -> torch.Tensor:
    try:
        d = torch.as_tensor(entry.get("direction"), dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise GancraftError(f"{where}domain {name!r}: 'direction' is not a list of numbers") from None
    if d.numel() != w_dim or not torch.isfinite(d).all() or d.norm() == 0:
        raise GancraftError(f"{where}domain {name!r}: 'direction' must be {w_dim} finite numbers, not all zero")
    # stored unit vectors pass through unchanged; a hand-edited one is normalised so 'distance' keeps its meaning
    return d / d.norm()


def _repurposed_basis(table: dict, G: torch.nn.Module, where: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    dirs = [
        _direction(e, n, G.w_dim, where)
        for n, e in table.items()
        if isinstance(e, dict) and e.get("kind") == "repurposed"
    ]
    if not dirs:
        return None, None
    # QR gives an orthonormal basis of their span even if the stored directions are not exactly orthogonal
    q, _ = torch.linalg.qr(torch.stack(dirs).double().t())
    basis = q.t().to(torch.float32)
    w_avg = G.mapping.w_avg.detach().cpu().to(torch.float32)
    mean_component = (w_avg @ basis.t()) @ basis
    return basis, mean_component


def project_to_subspace(
    ws: torch.Tensor, basis: torch.Tensor, mean_component: torch.Tensor | None = None, shift: torch.Tensor | None = None
) -> torch.Tensor:
    """Project w (any leading shape, last dim w_dim) off `basis` rows, add the mean's component and a shift.

    With shift = 0 this lands on the base subspace; with shift = s * d_k on domain k's repurposed subspace.
    """
    basis = basis.to(ws)
    out = ws - (ws @ basis.t()) @ basis
    if mean_component is not None:
        out = out + mean_component.to(ws)
    if shift is not None:
        out = out + shift.to(ws)
    return out


def apply_domain(ws: torch.Tensor, spec: DomainSpec | None) -> torch.Tensor:
    """Move mapped latents [N, num_ws, w_dim] into the domain (identity for non-expanded domains)."""
    if spec is None or not spec.transforms_w:
        return ws
    if spec.basis is None:
        return ws + spec.shift.to(ws)
    return project_to_subspace(ws, spec.basis, spec.mean_component, spec.shift)


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _one_modulation(a: DomainSpec, b: DomainSpec, how: str) -> str:
    """The order of the combined style scales; vectors of different orders have no common meaning."""
    if a.style_scale is None:
        return b.modulation
    if b.style_scale is not None and a.modulation != b.modulation:
        raise GancraftError(
            f"cannot {how} domains {a.name!r} ({a.modulation}) and {b.name!r} ({b.modulation}): "
            "their domain vectors were trained for different modulation orders"
        )
    return a.modulation


def _compose(a: DomainSpec, b: DomainSpec) -> DomainSpec:
    return DomainSpec(
        name=f"{a.name}+{b.name}",
        c=_add(a.c, b.c),
        style_scale=_add(a.style_scale, b.style_scale),
        basis=a.basis if a.basis is not None else b.basis,
        mean_component=a.mean_component if a.mean_component is not None else b.mean_component,
        shift=_add(a.shift, b.shift),
        modulation=_one_modulation(a, b, "compose"),
    )


def _lerp(a: torch.Tensor | None, b: torch.Tensor | None, t: float) -> torch.Tensor | None:
    if a is None and b is None:
        return None
    a = torch.zeros_like(b) if a is None else a
    b = torch.zeros_like(a) if b is None else b
    return a + (b - a) * t


def interpolate_domains(a: DomainSpec, b: DomainSpec, t: float) -> DomainSpec:
    """The domain a fraction t of the way from a to b, for cross-domain morphs.

    Class models interpolate the class vector (fed to the mapping network's embedding);
    expanded models interpolate the shift along the repurposed directions; domain-vector
    models interpolate the style scales.
    """
    return DomainSpec(
        name=f"{a.name}->{b.name}@{t:g}",
        c=_lerp(a.c, b.c, t),
        style_scale=_lerp(a.style_scale, b.style_scale, t),
        basis=a.basis if a.basis is not None else b.basis,
        mean_component=a.mean_component if a.mean_component is not None else b.mean_component,
        shift=_lerp(a.shift, b.shift, t),
        modulation=_one_modulation(a, b, "interpolate"),
    )


def check_folder_name(spec: DomainSpec) -> str:
    """The folder name images of this domain go to; refuses names that are not safe as one path part.

    Prompt domains carry a sanitised folder name, since their names are free text.
    """
    if spec.folder:
        return spec.folder
    if not _SAFE_NAME.match(spec.name.replace("+", "_")) or spec.name in (".", ".."):
        raise GancraftError(f"domain name {spec.name!r} cannot be used as a folder name")
    return spec.name
