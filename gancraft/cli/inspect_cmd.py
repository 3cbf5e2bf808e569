"""gancraft inspect: what a checkpoint holds."""

from __future__ import annotations

import json

import click

from ..checkpoint import load
from ..checkpoint.summary import summarize
from .paths import InputFile


@click.command("inspect")
@click.argument("checkpoint", type=InputFile(dir_okay=True))
@click.option("--layers", is_flag=True, help="List every tensor with its shape and resolution.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for scripts).")
def command(checkpoint: str, layers: bool, as_json: bool) -> None:
    """Show format, architecture, parameter counts, domains and history of CHECKPOINT.

    Works on gancraft safetensors, rosinality .pt, NVIDIA stylegan2-ada and stylegan3 .pkl
    (StyleGAN3 T and R, and that repository's StyleGAN2) and TF StyleGAN2 .pkl files ('-' reads
    standard input). Warns when tensors hold NaN or Inf.
    """
    info = summarize(load(checkpoint), layers=layers)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"file          {info['file']}")
    click.echo(f"format        {info['format']}  (sha256 {info['sha256'][:16]}…)")
    config = f" (config {info['stylegan3_config']})" if "stylegan3_config" in info else ""
    click.echo(
        f"family        {info['family']}{config}, {info['resolution']}x{info['resolution']}, "
        f"{info['img_channels']} channels"
    )
    click.echo(
        f"latents       z {info['z_dim']}, w {info['w_dim']} x {info['num_ws']}, "
        f"mapping {info['mapping_layers']} layers" + (f", {info['c_dim']} classes" if info["c_dim"] else "")
    )
    if "synthesis_layers" in info:
        click.echo("layers        name, size, channels, sampling rate, cutoff (after the Fourier-feature input)")
        for layer in info["synthesis_layers"]:
            kind = "toRGB" if layer["torgb"] else "critically sampled" if layer["critically_sampled"] else ""
            click.echo(
                f"  {layer['name']:<14}{layer['size']:>5}px {layer['channels']:>5}ch  "
                f"rate {layer['sampling_rate']:<5} cutoff {layer['cutoff']:<8.4g}{kind}".rstrip()
            )
    else:
        click.echo("channels      " + "  ".join(f"{r}:{c}" for r, c in info["channels"].items()))
    for net, n in info["networks"].items():
        click.echo(f"{net:<14}{n['parameters']:,} parameters in {n['tensors']} tensors")
    if info["domain_vector_dim"] is not None:
        click.echo(
            f"domain vector {info['domain_vector_dim']:,} parameters per domain (one scale per conv input channel)"
        )
    if "hyper" in info:
        h = info["hyper"]
        arch = h["architecture"] or {}
        click.echo(
            f"hyper-network {h['parameters']:,} parameters: CLIP text {arch.get('embed_dim', '?')} -> "
            f"{arch.get('depth', '?')} x {arch.get('width', '?')} -> {len(arch.get('style_dims', []))} "
            f"heads ({sum(arch.get('style_dims', [])):,} values)"
        )
        click.echo(
            f"  CLIP {h['clip_model']} ({h['clip']}); {h['prompts']} training prompts, "
            f"source prompt {h['source_prompt']!r}; any text works with --prompt"
        )
    if info["domains"]:
        click.echo("domains")
        for name, d in info["domains"].items():
            cost = info["domain_parameters"].get(name, 0)
            click.echo(f"  {name:<12}{_describe_domain(d)}" + (f" ({cost:,} parameters)" if cost else ""))
    if info["history"]:
        click.echo("history")
        for i, h in enumerate(info["history"], 1):
            ins = ", ".join(f"{x['path']} ({_digest(x)})" for x in h.get("inputs", []))
            click.echo(f"  {i}. {h.get('time', '?')}  gancraft {h.get('command')}  {ins}")
            if h.get("params"):
                click.echo(f"     {json.dumps(h['params'], sort_keys=True)}")
    if layers:
        click.echo("tensors")
        for layer in info["layers"]:
            r = layer["resolution"]
            click.echo(
                f"  {layer['name']:<48}{str(tuple(layer['shape'])):<22}{layer['dtype']:<10}"
                f"{'' if r is None else str(r) + 'px'}"
            )
    for w in info["warnings"]:
        click.echo(f"warning: {w}", err=True)


def _describe_domain(d: dict) -> str:
    kind = d.get("kind")
    if kind == "class":
        return f"class {d['class']}"
    if kind == "base":
        return "base subspace (the original domain)"
    if kind == "repurposed":
        return f"repurposed subspace: SeFA direction {d.get('index', '?')}, distance {d.get('distance')}"
    if kind == "vector":
        return f"domain vector {d['tensor']}"
    if kind == "hyper":
        return "hyper-network prompt (vector predicted from the text)"
    return json.dumps(d)


def _digest(entry: dict) -> str:
    """An input's digest as a history entry records it: blake3, or sha256 in older files."""
    for name in ("blake3", "sha256"):
        if isinstance(entry.get(name), str):
            return f"{name} {entry[name][:12]}"
    return "no digest"
