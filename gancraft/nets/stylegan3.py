"""StyleGAN3 generator (alias-free, configs T and R) with the numerics of NVIDIA's stylegan3 code.

Written for gancraft from the paper ("Alias-Free Generative Adversarial Networks", Karras et
al. 2021, appendices C-F) and checked against NVIDIA's implementation to 1e-4 in float32
(tests/test_stylegan3.py). Module and tensor names are NVIDIA's (``synthesis.input.freqs``,
``synthesis.L3_52_512.affine.weight``), so their state dicts load without translation, and the
mapping network is gancraft's StyleGAN2 one: both compute the same function.

The synthesis network is a Fourier-feature input followed by `num_layers` modulated convolutions
and a toRGB. Every layer runs in continuous-signal terms: its output has a sampling rate, a
cutoff and a transition band that grow geometrically from the first layer to the image, and
each nonlinearity is applied at twice the sampling rate between an upsampling and a
downsampling low-pass filter, so that it adds no aliases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, GancraftError
from . import ops
from .config import STYLEGAN3_NOT_TRAINABLE
from .stylegan2 import FullyConnectedLayer, LayerInfo, MappingNetwork


@dataclass
class StyleGAN3Config:
    """NVIDIA's stylegan3 ``Generator`` constructor arguments (T: the defaults; R: conv_kernel 1
    and use_radial_filters, with channel_base and channel_max doubled by its training script)."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 256
    img_channels: int = 3
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.01
    w_avg_beta: float = 0.998
    channel_base: int = 32768
    channel_max: int = 512
    num_layers: int = 14
    num_critical: int = 2
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    last_stopband_rel: float = 2**0.3
    margin_size: int = 10
    output_scale: float = 0.25
    num_fp16_res: int = 4  # kept as the file says; gancraft runs StyleGAN3 in float32 only
    conv_kernel: int = 3
    filter_size: int = 6
    lrelu_upsampling: int = 2
    use_radial_filters: bool = False
    conv_clamp: float | None = 256
    magnitude_ema_beta: float = 0.999  # a training setting, kept so that the config round-trips

    family = "stylegan3"

    @property
    def num_ws(self) -> int:
        # one w for the input layer, one per conv layer, one for the toRGB
        return self.num_layers + 2

    @property
    def config_name(self) -> str:
        return "R" if self.use_radial_filters else "T"

    def validate(self) -> "StyleGAN3Config":
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise CheckpointError(f"generator resolution {r} is not a power of two >= 4")
        for name in (
            "z_dim",
            "w_dim",
            "img_channels",
            "mapping_layers",
            "channel_base",
            "channel_max",
            "num_layers",
            "filter_size",
            "lrelu_upsampling",
            "conv_kernel",
        ):
            if int(getattr(self, name)) <= 0:
                raise CheckpointError(f"generator config: {name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.num_critical < self.num_layers:
            raise CheckpointError(
                f"generator config: num_critical {self.num_critical} must lie in "
                f"0..num_layers-1 ({self.num_layers - 1})"
            )
        return self

    def layer_specs(self) -> list["LayerSpec"]:
        return layer_specs(self)


@dataclass(frozen=True)
class LayerSpec:
    """Everything one synthesis layer needs, derived from the config as the paper's appendix F."""

    index: int
    name: str
    is_torgb: bool
    is_critically_sampled: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: float
    out_sampling_rate: float
    in_cutoff: float
    out_cutoff: float
    in_half_width: float
    out_half_width: float
    conv_kernel: int
    up: int
    down: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]


def _schedule(cfg: StyleGAN3Config) -> dict[str, np.ndarray]:
    """Per-layer cutoffs, stopbands, sampling rates, sizes and widths (index 0 = the input layer).

    Cutoff and minimum stopband follow a geometric progression from the first layer to the last
    non-critical one and stay at the image's Nyquist band for the critically sampled layers; each
    layer samples at the smallest power of two above twice its stopband (at most the image
    resolution) and carries a margin of pixels around the image except for the last two.
    """
    n = cfg.num_layers
    last_cutoff = cfg.img_resolution / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    progress = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** progress
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** progress
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, cfg.img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = cfg.img_resolution
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    return dict(cutoffs=cutoffs, rates=rates, half_widths=half_widths, sizes=sizes, channels=channels)


def layer_specs(cfg: StyleGAN3Config) -> list[LayerSpec]:
    s = _schedule(cfg)
    n = cfg.num_layers
    specs = []
    for i in range(n + 1):
        prev = max(i - 1, 0)
        torgb = i == n
        critical = i >= n - cfg.num_critical
        in_rate, out_rate = int(s["rates"][prev]), int(s["rates"][i])
        # the nonlinearity runs at lrelu_upsampling times the higher of the two rates
        tmp_rate = max(in_rate, out_rate) * (1 if torgb else cfg.lrelu_upsampling)
        up, down = int(np.rint(tmp_rate / in_rate)), int(np.rint(tmp_rate / out_rate))
        up_taps = cfg.filter_size * up if up > 1 and not torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not torgb else 1
        kernel = 1 if torgb else cfg.conv_kernel
        in_size, out_size = int(s["sizes"][prev]), int(s["sizes"][i])
        # pad so that the filtered, resampled output has out_size pixels, placing samples by
        # the symmetric interpretation of appendix C.3 (the extra `up` shifts by half a pixel)
        total = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + up_taps + down_taps - 2
        lo = (total + up) // 2
        out_ch = int(s["channels"][i])
        specs.append(
            LayerSpec(
                index=i,
                name=f"L{i}_{out_size}_{out_ch}",
                is_torgb=torgb,
                is_critically_sampled=critical,
                in_channels=int(s["channels"][prev]),
                out_channels=out_ch,
                in_size=in_size,
                out_size=out_size,
                in_sampling_rate=in_rate,
                out_sampling_rate=out_rate,
                in_cutoff=float(s["cutoffs"][prev]),
                out_cutoff=float(s["cutoffs"][i]),
                in_half_width=float(s["half_widths"][prev]),
                out_half_width=float(s["half_widths"][i]),
                conv_kernel=kernel,
                up=up,
                down=down,
                up_taps=up_taps,
                down_taps=down_taps,
                down_radial=cfg.use_radial_filters and not critical,
                padding=(lo, total - lo, lo, total - lo),
            )
        )
    return specs


def lowpass_filter(taps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> torch.Tensor | None:
    """Kaiser-windowed low-pass FIR: separable (1-D taps) or radially symmetric (2-D jinc).

    None stands for the identity (one tap), which the layer then skips.
    """
    if taps == 1:
        return None
    import scipy.signal  # only when a network is built: it slows every command's start
    import scipy.special

    if not radial:
        return torch.as_tensor(
            scipy.signal.firwin(numtaps=taps, cutoff=cutoff, width=width, fs=fs), dtype=torch.float32
        )
    # the 2-D ideal low-pass of a disc of radius `cutoff` is a jinc: J1(2 pi fc r) / (pi r)
    t = (np.arange(taps) - (taps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    f = scipy.special.j1(2 * cutoff * np.pi * r) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(taps, width / (fs / 2)))
    window = np.kaiser(taps, beta)
    f = f * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def _fir(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Zero-insertion upsampling, padding (negative crops), FIR filter, decimation.

    A 1-D filter runs separably, rows then columns, each pass carrying the square root of the
    gain: 2*K multiply-adds per pixel instead of K*K, the dominant cost at high resolution.
    """
    if f is None:
        if up == down == 1 and not any(padding) and gain == 1:
            return x  # the toRGB layer's identity filters
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim == 1:
        return _fir_separable(x, f, up, down, padding, gain)
    return ops.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain)


def _fir_separable(
    x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple[int, int, int, int], gain: float
) -> torch.Tensor:
    n, c, h, w = x.shape
    if up > 1:
        y = x.new_zeros([n, c, h * up, w * up])
        y[:, :, ::up, ::up] = x
        x = y
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f.to(x.dtype) * math.sqrt(gain)).flip(0)  # a true convolution, as upfirdn2d's
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, down), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(down, 1), groups=c)


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    b: torch.Tensor,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
) -> torch.Tensor:
    """Bias, upsample and low-pass, leaky ReLU with gain and clamp, low-pass and downsample."""
    x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = _fir(x, fu, up=up, padding=padding, gain=up * up)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return _fir(x, fd, down=down)


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    padding: int,
    input_gain: torch.Tensor,
) -> torch.Tensor:
    """Per-sample modulated convolution, StyleGAN3's variant.

    Weight and styles are first scaled to unit RMS (the weight per output channel, the styles
    over the whole batch), which demodulation then undoes up to its epsilon; this keeps float16
    activations in range. input_gain is 1 / RMS of the layer's input seen in training.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles.view(n, 1, in_ch, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    w = w * input_gain
    out = F.conv2d(
        x.reshape(1, n * in_ch, *x.shape[2:]),
        w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype),
        padding=padding,
        groups=n,
    )
    return out.reshape(n, out_ch, *out.shape[2:])


class SynthesisInput(nn.Module):
    """Fourier features: `channels` sinusoids of fixed random frequencies inside a disc of radius
    `bandwidth`, rotated and translated per sample by an affine of w, then mixed by a learned
    matrix. `transform` is the user's inverse transform of the output image (gen_images's
    --translate/--rotate): identity unless set."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.channels, self.size = channels, size
        self.sampling_rate, self.bandwidth = sampling_rate, bandwidth
        # frequencies uniform over a disc (radii reshaped by the Gaussian's CDF), random phases
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():
            # the affine starts at the identity transform: rotation (cos, sin) = (1, 0), no shift
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)  # (cos, sin, tx, ty), the rotation normalised
        cos, sin, tx, ty = t.unbind(1)
        one, zero = torch.ones_like(cos), torch.zeros_like(cos)
        rotate = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).view(n, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], 1).view(n, 3, 3)
        m = rotate @ shift @ self.transform.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]
        # a user transform can push frequencies past the first layer's band: fade them out
        # linearly between the bandwidth and the Nyquist frequency
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # pixel centres in units of the sampling period, centred on the image's middle
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = theta[1, 1] = 0.5 * self.size / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)
        x = torch.sin((x + phases.view(n, 1, 1, -1)) * (2 * np.pi)) * amplitudes.view(n, 1, 1, -1)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    def __init__(self, spec: LayerSpec, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.spec = spec
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, spec.in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([spec.out_channels, spec.in_channels, spec.conv_kernel, spec.conv_kernel])
        )
        self.bias = nn.Parameter(torch.zeros([spec.out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        tmp_rate = spec.in_sampling_rate * spec.up
        self.register_buffer(
            "up_filter", lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, tmp_rate)
        )
        self.register_buffer(
            "down_filter",
            lowpass_filter(spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, tmp_rate, radial=spec.down_radial),
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.spec
        styles = self.affine(w)
        if s.is_torgb:
            styles = styles * (1 / np.sqrt(s.in_channels * s.conv_kernel**2))
        x = modulated_conv(
            x,
            self.weight,
            styles,
            demodulate=not s.is_torgb,
            padding=s.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            s.up,
            s.down,
            s.padding,
            gain=1 if s.is_torgb else np.sqrt(2),
            slope=1 if s.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.cfg = cfg
        self.specs = layer_specs(cfg)
        first = self.specs[0]
        self.num_ws = cfg.num_ws
        self.output_scale = cfg.output_scale
        s = _schedule(cfg)
        self.input = SynthesisInput(
            cfg.w_dim, first.in_channels, int(s["sizes"][0]), float(s["rates"][0]), float(s["cutoffs"][0])
        )
        for spec in self.specs:
            setattr(self, spec.name, SynthesisLayer(spec, cfg.w_dim, cfg.conv_clamp))

    def layers(self) -> list[LayerInfo]:
        """Every modulated layer in order, as StyleGAN2's layers() lists them for SeFA and edits.

        Their 'resolution' is the layer's sampling rate, the nearest thing StyleGAN3 has to a
        block resolution (L0 ... at the first layer's rate, the last layers at the image's).
        The input's affine predicts a rotation and shift, not a style, and is not listed.
        """
        return [
            LayerInfo(s.name, s.out_sampling_rate, "torgb" if s.is_torgb else "conv", s.index + 1, s.in_channels)
            for s in self.specs
        ]

    @property
    def style_dim(self) -> int:
        # asked for only by domain-vector and hyper-network code, which StyleGAN3 does not support
        raise GancraftError("domain vectors and hyper-networks are not supported for StyleGAN3 models")

    def check_precision(self, precision: str) -> None:
        """Refuse anything but float32: NVIDIA's float16 StyleGAN3 layers are not implemented here."""
        if precision != "fp32":
            raise GancraftError(f"--precision {precision}: StyleGAN3 models run in fp32 only")

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        style_scale: torch.Tensor | None = None,
        precision: str = "fp32",
        **_ignored: object,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> float32 images. StyleGAN3 has no noise inputs (noise_mode is
        accepted for a uniform call); domain vectors and reduced precision are not supported."""
        if style_scale is not None:
            raise GancraftError("domain vectors (style scales) are not supported for StyleGAN3 models")
        self.check_precision(precision)
        with ops.exact_fp32():
            ws = ws.to(torch.float32).unbind(1)
            x = self.input(ws[0])
            for spec, w in zip(self.specs, ws[1:]):
                x = getattr(self, spec.name)(x, w)
            if self.output_scale != 1:
                x = x * self.output_scale
            return x.to(torch.float32)


class Generator(nn.Module):
    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.num_ws = cfg.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim,
            cfg.c_dim,
            cfg.w_dim,
            self.num_ws,
            cfg.mapping_layers,
            lr_multiplier=cfg.mapping_lr_multiplier,
            w_avg_beta=cfg.w_avg_beta,
        )

    def train(self, mode: bool = True) -> "Generator":
        # every gancraft training loop puts its generator in training mode: refuse there, with a
        # line the user can act on, instead of failing somewhere inside the loop
        if mode:
            raise GancraftError(STYLEGAN3_NOT_TRAINABLE)
        return super().train(False)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        **synthesis_kwargs: object,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)


def input_transform(translate: tuple[float, float] = (0.0, 0.0), rotate: float = 0.0) -> torch.Tensor:
    """The value of ``synthesis.input.transform`` that moves the image by `translate` (in units
    of the image, as NVIDIA's gen_images --translate) and turns it by `rotate` degrees.

    The buffer holds the inverse of the image's transform, since it maps output coordinates
    back onto the Fourier features. For a rotation R and shift t that inverse is (R^T, -R^T t).
    """
    a = math.radians(rotate)
    c, s = math.cos(a), math.sin(a)
    tx, ty = translate
    # the image transform is [[c, s, tx], [-s, c, ty]]; R^T = [[c, -s], [s, c]]
    return torch.tensor([[c, -s, -(c * tx - s * ty)], [s, c, -(s * tx + c * ty)], [0.0, 0.0, 1.0]], dtype=torch.float32)
