"""Domain Expansion's evaluation protocol for `expand --report` (Nitzan et al., Sec. 4.2).

The claim to check is twofold: the base subspace still generates the parent's domain, and
each repurposed subspace generates its new domain. So:

- base: FID of the expanded model's base-subspace samples (every repurposed coordinate at its
  base value) against the parent's own samples on other seeds, beside the same FID for the
  parent's base-subspace samples (what the projection alone costs) and the parent against
  itself (the sampling floor at this sample count);
- base against real data (with real images of the parent's domain), the paper's Sec. 4.5: FID of
  the base subspace's samples against the images, beside the parent's own samples (all of W)
  against the same images, so the two quality figures the paper compares sit side by side;
- ``model`` tasks: FID of the domain's samples against the child's, before (the parent moved
  along the direction) and after;
- a domain probe: a linear classifier on the extractor's features, trained on the parent's
  samples (class ``base``), each child's samples and each ``images`` task's images, labels the
  samples of every subspace; the score is the share given the subspace's own class;
- ``clip`` tasks: CLIP zero-shot, the share of samples nearer the target prompt than the
  source prompt (with the task's first CLIP model, i.e. not a held-out one).

Every row is "before" (the parent) and "after" (the expanded model) on the same latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..metrics.features import FeatureExtractor, to_unit_range
from ..metrics.fid import fid_from_stats, stats_from_features


@dataclass
class ReportRow:
    domain: str
    kind: str
    measure: str
    before: float
    after: float


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    return fid_from_stats(stats_from_features([a.double().numpy()]), stats_from_features([b.double().numpy()]))


def fit_probe(
    features: list[torch.Tensor], steps: int = 200, l2: float = 1e-3
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A multinomial logistic regression on standardised features, class i from features[i];
    returns a function giving predicted class indices. Classes are weighted to count equally, as
    an images task brings a handful of examples against hundreds of samples."""
    x = torch.cat(features).double()
    y = torch.cat([torch.full([f.shape[0]], i, dtype=torch.long) for i, f in enumerate(features)])
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mean) / std
    weight = torch.tensor([1.0 / f.shape[0] for f in features], dtype=torch.float64)
    W = torch.zeros(x.shape[1], len(features), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(features), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ W + b, y, weight=weight) + l2 * W.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    W, b = W.detach(), b.detach()
    return lambda f: ((f.double() - mean) / std @ W + b).argmax(1)


@torch.no_grad()
def expansion_report(
    method,
    G: torch.nn.Module,
    extractor: FeatureExtractor,
    n: int = 1000,
    batch: int = 32,
    seed: int = 0,
    real: torch.Tensor | None = None,
    real_name: str = "real images",
) -> tuple[list[ReportRow], float]:
    """The rows of the protocol above for the expanded generator `G` of `method` (an
    ExpansionMethod), and the floor FID (parent against parent, other seeds). References are
    drawn from seeds z ~ N(0, I) under `seed`, evaluated samples under seed + 1. `real`: the
    extractor's features of real images of the parent's domain (named `real_name` in the table)."""
    G = G.eval()
    parent = method.source.eval()
    sub = method.subspaces
    dev = next(G.parameters()).device
    z_ref, z_eval = (
        torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(s)).to(dev) for s in (seed, seed + 1)
    )

    def feats(render: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return torch.cat([extractor(to_unit_range(render(z[i : i + batch]))) for i in range(0, z.shape[0], batch)])

    def on(net: torch.nn.Module, domain: str | None) -> Callable[[torch.Tensor], torch.Tensor]:
        def render(z: torch.Tensor) -> torch.Tensor:
            ws = net.mapping(z)
            return net.synthesis(sub.base(ws) if domain is None else sub.domain(ws, domain), noise_mode="const")

        return render

    parent_ref = feats(lambda z: parent(z, None, noise_mode="const"), z_ref)
    parent_eval = feats(lambda z: parent(z, None, noise_mode="const"), z_eval)
    floor = _fid(parent_eval, parent_ref)
    samples = {"base": (feats(on(parent, None), z_eval), feats(on(G, None), z_eval))}
    rows = [
        ReportRow(
            "base",
            "base",
            "FID to the parent",
            _fid(samples["base"][0], parent_ref),
            _fid(samples["base"][1], parent_ref),
        )
    ]
    if real is not None:
        rows.append(
            ReportRow(
                "base",
                "base",
                f"FID to {real_name} (before: the parent, all of W)",
                _fid(parent_eval, real),
                _fid(samples["base"][1], real),
            )
        )
    classes = {"base": parent_ref}
    for t in method.tasks:
        samples[t.name] = (feats(on(parent, t.name), z_eval), feats(on(G, t.name), z_eval))
        if t.kind == "model":
            child = method.children[t.name]
            classes[t.name] = feats(lambda z: child(z, None, noise_mode="const"), z_ref)
            rows.append(
                ReportRow(
                    t.name,
                    t.kind,
                    f"FID to {t.arg}",
                    _fid(samples[t.name][0], classes[t.name]),
                    _fid(samples[t.name][1], classes[t.name]),
                )
            )
        elif t.kind == "images":
            imgs = method.images[t.name]
            classes[t.name] = torch.cat(
                [extractor(to_unit_range(imgs[i : i + batch].to(dev))) for i in range(0, imgs.shape[0], batch)]
            )
        else:
            before, after = (
                _zero_shot(method.clip_losses[t.name], on(net, t.name), z_eval, batch) for net in (parent, G)
            )
            rows.append(
                ReportRow(
                    t.name,
                    t.kind,
                    f"CLIP: nearer {method.clip_losses[t.name].target_text!r} "
                    f"than {method.clip_losses[t.name].source_text!r}",
                    before,
                    after,
                )
            )
    if len(classes) > 1:
        kinds = {"base": "base", **{t.name: t.kind for t in method.tasks}}
        names = list(classes)
        predict = fit_probe([classes[k] for k in names])
        for k, name in enumerate(names):
            share = [float((predict(f) == k).double().mean()) for f in samples[name]]
            rows.append(ReportRow(name, kinds[name], f"probe: share labelled {name} (of {', '.join(names)})", *share))
    return rows, floor


def _zero_shot(loss, render: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, batch: int) -> float:
    """Share of samples whose CLIP embedding is nearer the (templated) target prompt than the source."""
    clip = loss.clips[0]
    text = torch.stack(
        [
            F.normalize(clip.encode_text([t.format(p) for t in loss.templates]).mean(0), dim=-1)
            for p in (loss.source_text, loss.target_text)
        ]
    )
    hits = 0
    for i in range(0, z.shape[0], batch):
        sims = clip.encode_images(render(z[i : i + batch])) @ text.t()
        hits += int((sims[:, 1] > sims[:, 0]).sum())
    return hits / z.shape[0]


def format_report(rows: list[ReportRow], floor: float, n: int, extractor: str) -> str:
    """The rows as a plain-text table, with the sample count, extractor and floor above it."""
    lines = [
        f"Domain Expansion report: {n} samples per set, features {extractor}",
        f"floor: FID of the parent against itself on other seeds = {floor:.4f}",
        f"{'domain':<16} {'kind':<7} {'before':>9} {'after':>9}  measure (before: the parent; better is "
        "lower for FID, higher for shares)",
    ]
    for r in rows:
        lines.append(f"{r.domain:<16} {r.kind:<7} {r.before:>9.4f} {r.after:>9.4f}  {r.measure}")
    return "\n".join(lines) + "\n"
