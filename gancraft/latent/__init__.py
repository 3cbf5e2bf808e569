"""Latent spaces: seeds, domains of multi-domain models, latent and direction files, generation."""

from .domains import DomainSpec, apply_domain, interpolate_domains, project_to_subspace, resolve_domain, resolve_domains
from .files import (
    Direction,
    Directions,
    Edit,
    Latents,
    load_direction,
    load_directions,
    load_latents,
    parse_edit,
    save_latents,
)
from .generate import Batch, generate, lerp, map_latents, slerp, style_mix, synthesize
from .seeds import parse_seeds, z_from_seeds

__all__ = [
    "Batch",
    "Direction",
    "Directions",
    "DomainSpec",
    "Edit",
    "Latents",
    "apply_domain",
    "generate",
    "interpolate_domains",
    "lerp",
    "load_direction",
    "load_directions",
    "load_latents",
    "map_latents",
    "parse_edit",
    "parse_seeds",
    "project_to_subspace",
    "resolve_domain",
    "resolve_domains",
    "save_latents",
    "slerp",
    "style_mix",
    "synthesize",
    "z_from_seeds",
]
