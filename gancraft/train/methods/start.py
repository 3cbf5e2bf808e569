"""Starting networks shared by the methods: a checkpoint's trainable (G, D, G_ema), and the
conditional form of an unconditional model that rooting and the union fine-tunes start from."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Sequence

import torch

from ...checkpoint import Checkpoint
from ...errors import GancraftError
from ...nets.stylegan2 import Discriminator, Generator


def start_nets(ckpt: Checkpoint, what: str) -> tuple[Generator, Discriminator, Generator]:
    """Trainable (G, D, G_ema) of a checkpoint. As in the official GAN Cocktail code, training
    starts from the stored G_ema (the model one samples from): G is a copy of it and G_ema
    starts equal to G."""
    require_discriminator(ckpt, what)
    G = ckpt.generator().requires_grad_(True)
    D = ckpt.discriminator().requires_grad_(True)
    return G, D, copy.deepcopy(G).requires_grad_(False)


def require_discriminator(ckpt: Checkpoint, what: str) -> None:
    """Refuse a checkpoint without D, which every method that keeps training one needs."""
    if ckpt.d_config is None or "D" not in ckpt.nets:
        raise GancraftError(
            f"{ckpt.path or what}: has no discriminator, which {what} needs to keep training "
            "(NVIDIA pickles and native files from `train`/`root` carry one)"
        )


def class_names(ckpt: Checkpoint) -> list[str] | None:
    """The domain names of a class-conditional checkpoint in class order (None when it has no class table)."""
    table = {n: e["class"] for n, e in (ckpt.domains or {}).items() if isinstance(e, dict) and e.get("kind") == "class"}
    if not table or sorted(table.values()) != list(range(len(table))):
        return None
    return sorted(table, key=table.__getitem__)


def union_start(
    start: Checkpoint, classes: Sequence[str], seed: int, what: str
) -> tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) of a model with one class per name: START itself when it already has exactly
    these classes in this order (a rooted or averaged model), else START made conditional."""
    if not start.g_config.c_dim:
        return conditional_from_unconditional(start, len(classes), seed)
    have = class_names(start)
    if have != list(classes) or start.d_config is None or start.d_config.c_dim != len(classes):
        raise GancraftError(
            f"{start.path or 'start model'}: its classes are {have or start.g_config.c_dim}, "
            f"expected {', '.join(classes)} in this order (give the domains in its class order)"
        )
    return start_nets(start, what)


def conditional_from_unconditional(
    ckpt: Checkpoint, num_classes: int, seed: int = 0
) -> tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) with `num_classes` classes, built from the unconditional model's G_ema and D.

    G: NVIDIA's mapping concatenates normalize(z) with normalize(embed(c)) before fc0. The z
    columns of fc0 are the old ones scaled by sqrt((z_dim + embed) / z_dim), undoing the change
    of fc0's equalised-lr gain; the new class columns keep their fresh random initialisation.
    They must: with the mapping's 0.01 learning-rate multiplier, zero-initialised class columns
    stay near zero for thousands of steps (measured: classes differed by < 3e-3 in pixels after
    12 kimg), so the union model would remain unconditional. With the class columns zeroed
    the new G computes exactly the old one, which is what the tests check.

    D: the projection discriminator outputs <out(x), cmap(c)> / sqrt(cmap_dim). As in the official
    code (copy_params_and_buffers_and_change_mapping), every row of the new `out` layer is the
    old single output row and the class mapping keeps its fresh random initialisation, so class c
    starts as the old D scaled by s_c = sum(cmap(c)) / sqrt(cmap_dim). The random cmap entries
    are what lets D become class-aware: they give each row of `out` its own gradient. An earlier
    version zeroed the mapping's last layer so that every class reproduced the old D exactly;
    with every cmap entry equal, every row of `out` got the same gradient, the rows stayed
    identical and D could only scale one class-blind output per class (measured on the GAN
    Cocktail union after 40 kimg: D's logits for one image differed by 0.02-0.04 between
    classes, and its cat and dog classes drew each other's domain). The class mapping keeps
    NVIDIA's 0.01 learning-rate multiplier, as the official code's D does: at the full rate
    Adam shrank the projection toward zero within ~20 steps (the source's D calls the new
    domain's real images fake) and D sat at chance for the whole run.
    """
    if ckpt.g_config.c_dim:
        raise GancraftError(
            f"{ckpt.path or 'start model'}: is already conditional (c_dim {ckpt.g_config.c_dim}); "
            "expected an unconditional (e.g. averaged) model"
        )
    G_old, D_old, _ = start_nets(ckpt, "fine-tuning")
    torch.manual_seed(seed)
    g_cfg = dataclasses.replace(ckpt.g_config, c_dim=num_classes)
    d_cfg = dataclasses.replace(ckpt.d_config, c_dim=num_classes)
    G = Generator(g_cfg)
    _copy_matching(G, G_old)
    with torch.no_grad():
        fc0_new, fc0_old = G.mapping.fc0.weight, G_old.mapping.fc0.weight
        fc0_new[:, : G_old.z_dim] = fc0_old * math.sqrt(fc0_new.shape[1] / fc0_old.shape[1])
    D = Discriminator(d_cfg)
    _copy_matching(D, D_old)
    with torch.no_grad():
        D.b4.out.weight.copy_(D_old.b4.out.weight.expand_as(D.b4.out.weight))
        D.b4.out.bias.copy_(D_old.b4.out.bias.expand_as(D.b4.out.bias))
    # one class pathway: G_ema is a copy of G, as in the official code (two conversions would
    # draw two different random pathways, and the scored G_ema would keep its own for long)
    return G.requires_grad_(True), D.requires_grad_(True), copy.deepcopy(G).requires_grad_(False)


def _copy_matching(new: torch.nn.Module, old: torch.nn.Module) -> None:
    """Copy every tensor whose name and shape agree; the rest keep their fresh initialisation."""
    own = new.state_dict()
    keep = {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}
    own.update(keep)
    new.load_state_dict(own)
