"""Base and repurposed subspaces of an expanded generator (Domain Expansion, Sec. 3.1).

The repurposed directions d_1..d_k are dormant SeFA directions. The base subspace is W with
every repurposed component removed and w_avg's component along them put back, so base latents
stay where the source generator was trained; domain i's subspace is the base subspace moved by
s along d_i. The maths is the same as the sampling side's (`latent.domains`): training and
sampling must put a latent in exactly the same place, so both go through
`domains.project_to_subspace` and build the basis the same way (QR of the stored directions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import GancraftError
from .domains import project_to_subspace


def orthonormal_basis(directions: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning `directions` (k x w_dim); SeFA rows already are, hand-made ones may not be."""
    if directions.ndim != 2 or directions.shape[0] == 0:
        raise GancraftError(f"repurposed directions must be k x w_dim with k >= 1, got {tuple(directions.shape)}")
    q, r = torch.linalg.qr(directions.detach().cpu().double().t())
    if r.diagonal().abs().min() < 1e-6:
        raise GancraftError("repurposed directions are linearly dependent (a direction was chosen twice?)")
    return q.t().to(torch.float32)


@dataclass
class Subspaces:
    """Everything needed to put a latent on the base subspace or on one domain's subspace."""

    basis: torch.Tensor  # k x w_dim orthonormal rows spanning the repurposed directions
    mean_component: torch.Tensor  # w_avg's part in that span
    shifts: dict[str, torch.Tensor]  # domain name -> distance * direction

    def to(self, device: torch.device | str) -> "Subspaces":
        return Subspaces(
            self.basis.to(device), self.mean_component.to(device), {k: v.to(device) for k, v in self.shifts.items()}
        )

    def base(self, ws: torch.Tensor) -> torch.Tensor:
        """Latents (any leading shape, last dim w_dim) projected onto the base subspace."""
        return project_to_subspace(ws, self.basis, self.mean_component)

    def domain(self, ws: torch.Tensor, name: str) -> torch.Tensor:
        """Latents on domain `name`'s repurposed subspace; 'a+b' adds both shifts (composition)."""
        shift = None
        for part in name.split("+"):
            if part not in self.shifts:
                raise GancraftError(f"no repurposed domain {part!r} (known: {', '.join(self.shifts)})")
            shift = self.shifts[part] if shift is None else shift + self.shifts[part]
        return project_to_subspace(ws, self.basis, self.mean_component, shift)


def subspaces_from_table(table: dict[str, dict], w_avg: torch.Tensor) -> Subspaces:
    """Subspaces of a domain table in the `ckpt.domains` convention (base + repurposed entries)."""
    names, dirs, dists = [], [], []
    for name, entry in table.items():
        if isinstance(entry, dict) and entry.get("kind") == "repurposed":
            d = torch.as_tensor(entry["direction"], dtype=torch.float32).reshape(-1)
            names.append(name)
            dirs.append(d / d.norm())
            dists.append(float(entry["distance"]))
    if not dirs:
        raise GancraftError("the domain table has no repurposed domain")
    stacked = torch.stack(dirs)
    basis = orthonormal_basis(stacked)
    w_avg = w_avg.detach().cpu().to(torch.float32).reshape(-1)
    mean_component = (w_avg @ basis.t()) @ basis
    return Subspaces(basis, mean_component, {n: s * d for n, s, d in zip(names, dists, stacked)})


def choose_directions(num_directions: int, count: int, chosen: list[int] | None = None) -> list[int]:
    """Indices of the directions to repurpose: `chosen` (validated) or the last `count` (most dormant first)."""
    if count < 1:
        raise GancraftError("give at least one task", field="tasks")
    if chosen is None:
        if count > num_directions:
            raise GancraftError(f"{count} tasks need {count} directions; the directions file has {num_directions}")
        return [num_directions - 1 - i for i in range(count)]
    if len(chosen) != count:
        raise GancraftError(f"lists {len(chosen)} indices for {count} tasks; give one per task", field="directions")
    for i in chosen:
        if not 0 <= i < num_directions:
            raise GancraftError(f"index {i} is out of range (the file has 0-{num_directions - 1})", field="directions")
    if len(set(chosen)) != len(chosen):
        raise GancraftError("an index appears twice; every task needs its own direction", field="directions")
    return list(chosen)


def least_changing(changes: np.ndarray | Sequence[float], count: int) -> list[int]:
    """The `count` directions whose measured image change is smallest, least first.

    The singular values only bound how much a direction moves the styles; what a generator
    ignores is what it was never trained to use, which the measured change shows directly
    (Domain Expansion, App. C.1). Ties keep the later index first, as the singular-value order would.
    """
    changes = np.asarray(changes, dtype=np.float64)
    if count > changes.size:
        raise GancraftError(f"{count} tasks need {count} directions; {changes.size} were measured")
    order = sorted(range(changes.size), key=lambda i: (changes[i], -i))
    return order[:count]


def expansion_table(names: list[str], directions: torch.Tensor, indices: list[int], distance: float) -> dict:
    """The `ckpt.domains` table of an expanded model: base plus one repurposed entry per name."""
    if not distance > 0:
        raise GancraftError(f"must be positive, got {distance}", field="distance")
    table: dict[str, dict] = {"base": {"kind": "base"}}
    for name, k in zip(names, indices):
        d = directions[k].detach().cpu().to(torch.float32)
        table[name] = {
            "kind": "repurposed",
            "direction": (d / d.norm()).tolist(),
            "index": int(k),
            "distance": float(distance),
        }
    return table
