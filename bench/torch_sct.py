#!/usr/bin/env python3
"""
The sCT training step of @scm/consistency in PyTorch, as the reference for bench/sct-step.js.

The network mirrors packages/nn/src/unet.ts layer for layer (same module names, same
parameter shapes, so the same state-dict keys as our parameter names), and the step
mirrors scmStep (packages/consistency/src/step.ts) plus the training loop's update:

    z ~ N(0, sd^2), t = clip(atan(e^tau / sd)), tau ~ N(P_mean, P_std^2)
    x_t = cos t x0 + sin t z,  dx_t/dt = cos t z - sin t x0
    (F, J) = jvp(F_theta, (x_t/sd, t), (cos t sin t dx_t/dt / sd, cos t sin t))   no parameter tangents
    g = -cos^2 t (sd F - dx_t/dt) - r (cos t sin t x_t + sd J),  g = g / (||g|| + 0.1)
    L = mean(e^w(t) ||F_theta - sg(F_theta) - g||^2 / D - w(t))
    backward, RAdam(lr 1e-4, betas (0.9, 0.99)), EMA of the parameters (EDM half-life rule)

all in float32 (TF32 off on CUDA).

    python3 bench/torch_sct.py --preset nano,tiny --batch 32 --threads 2,1
    python3 bench/torch_sct.py --device cuda --preset nano,tiny,small --batch 32,128
    python3 bench/torch_sct.py --check DIR      # compare with a forward/JVP exported by sct-step.js

--json FILE writes { case, impl, unit, value } records ('-' for stdout). --params DIR loads
the initial parameters exported by sct-step.js (otherwise PyTorch's default init).
On a CPU shared with other jobs, set OMP_WAIT_POLICY=PASSIVE (sct-step.js does): spinning
OpenMP threads collapse when a core is taken (nano, 2 threads: 2 instead of 15 img/s).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:  # PyTorch >= 2.0
    from torch.func import jvp as _jvp
except ImportError:  # PyTorch 1.13 (Debian's python3-torch): functorch ships with it
    from functorch import jvp as _jvp

# The presets of packages/nn/src/unet.ts (32x32x3 images).
PRESETS = {
    "nano": dict(base=16, mult=(1, 2), blocks=1, attn=()),
    "tiny": dict(base=32, mult=(1, 2), blocks=1, attn=(16,)),
    "small": dict(base=64, mult=(1, 2, 2), blocks=2, attn=(8,)),
}
SIGMA_D = 0.5
EPS = 1e-6  # the UNet's GroupNorm epsilon (DDPM++)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def default_groups(channels, max_groups=32, min_per_group=4):
    g = max(1, min(max_groups, channels // min_per_group))
    while channels % g:
        g -= 1
    return g


def group_norm(channels):
    return nn.GroupNorm(default_groups(channels), channels, eps=EPS)


def positional_embedding(t, channels, sin_first):
    """EDM's positional embedding, endpoint form: freqs_k = (1/10000)^(k / (n/2 - 1))."""
    half = channels // 2
    freqs = (1 / 10000) ** (torch.arange(half, dtype=t.dtype, device=t.device) / (half - 1))
    arg = t[:, None] * freqs[None, :]
    parts = [torch.sin(arg), torch.cos(arg)] if sin_first else [torch.cos(arg), torch.sin(arg)]
    return torch.cat(parts, dim=1)


def pixel_norm(x, eps=1e-8):
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


class AdaptiveNorm(nn.Module):
    """Adaptive double normalization: GN(x) * pnorm(scale) + pnorm(shift), [scale, shift] = Linear(emb)."""

    def __init__(self, channels, emb_channels):
        super().__init__()
        self.affine = nn.Linear(emb_channels, 2 * channels)
        self.norm = group_norm(channels)

    def forward(self, x, emb):
        scale, shift = self.affine(emb).chunk(2, dim=1)
        h = self.norm(x)
        return h * pixel_norm(scale)[:, :, None, None] + pixel_norm(shift)[:, :, None, None]


class SelfAttention2d(nn.Module):
    def __init__(self, channels, skip_scale, heads=1):
        super().__init__()
        self.heads, self.skip_scale = heads, skip_scale
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, hh, ww = x.shape
        heads, d, length = self.heads, c // self.heads, hh * ww
        qkv = self.qkv(self.norm(x))
        tokens = qkv.reshape(n, 3, heads, d, length).permute(1, 0, 2, 4, 3).reshape(3, n * heads, length, d)
        q, k, v = tokens[0], tokens[1], tokens[2]
        p = torch.softmax((q * (1 / math.sqrt(d))) @ k.transpose(1, 2), dim=-1)
        o = (p @ v).reshape(n, heads, length, d).permute(0, 1, 3, 2).reshape(n, c, hh, ww)
        return (x + self.proj(o)) * self.skip_scale


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_channels, resample="none", attention=False, skip_scale=math.sqrt(0.5)):
        super().__init__()
        self.resample, self.skip_scale = resample, skip_scale
        self.norm0 = group_norm(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.cond = AdaptiveNorm(cout, emb_channels)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout or resample != "none" else None
        self.attn = SelfAttention2d(cout, skip_scale) if attention else None

    def resampled(self, x):
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x, emb):
        h = self.conv0(self.resampled(F.silu(self.norm0(x))))
        h = F.silu(self.cond(h, emb))
        h = self.conv1(h)
        skip = self.skip(self.resampled(x)) if self.skip is not None else x
        h = (h + skip) * self.skip_scale
        return self.attn(h) if self.attn is not None else h


class UNet(nn.Module):
    """packages/nn/src/unet.ts with adaptive double normalization and a positional time embedding."""

    def __init__(self, base, mult, blocks, attn, image_channels=3, image_size=32):
        super().__init__()
        self.base = base
        emb = 4 * base
        self.map = nn.ModuleDict({"layer0": nn.Linear(base, emb), "layer1": nn.Linear(emb, emb)})
        enc, dec, self.with_skip = {}, {}, {}
        cout, skips = image_channels, []
        for level, m in enumerate(mult):
            res = image_size >> level
            if level == 0:
                enc[f"{res}x{res}_conv"] = nn.Conv2d(cout, base, 3, padding=1)
                cout = base
            else:
                enc[f"{res}x{res}_down"] = ResBlock(cout, cout, emb, resample="down")
            skips.append(cout)
            for i in range(blocks):
                cin, cout = cout, base * m
                enc[f"{res}x{res}_block{i}"] = ResBlock(cin, cout, emb, attention=res in attn)
                skips.append(cout)
        for level in reversed(range(len(mult))):
            res = image_size >> level
            if level == len(mult) - 1:
                dec[f"{res}x{res}_in0"] = ResBlock(cout, cout, emb, attention=len(attn) > 0)
                dec[f"{res}x{res}_in1"] = ResBlock(cout, cout, emb)
            else:
                dec[f"{res}x{res}_up"] = ResBlock(cout, cout, emb, resample="up")
            for i in range(blocks + 1):
                cin, cout = cout + skips.pop(), base * mult[level]
                name = f"{res}x{res}_block{i}"
                dec[name] = ResBlock(cin, cout, emb, attention=i == blocks and res in attn)
                self.with_skip[name] = True
        self.enc, self.dec = nn.ModuleDict(enc), nn.ModuleDict(dec)
        self.out = nn.ModuleDict({"norm": group_norm(cout), "conv": nn.Conv2d(cout, image_channels, 3, padding=1)})

    def forward(self, x, t):
        e = positional_embedding(t, self.base, sin_first=True)
        emb = F.silu(self.map["layer1"](F.silu(self.map["layer0"](e))))
        skips, h = [], x
        for block in self.enc.values():
            h = block(h) if isinstance(block, nn.Conv2d) else block(h, emb)
            skips.append(h)
        for name, block in self.dec.items():
            if name in self.with_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb)
        return self.out["conv"](F.silu(self.out["norm"](h)))


class WeightingHead(nn.Module):
    """w_phi(t) = Linear(posemb(t, 128) -> 1), zero-initialized weight (packages/consistency/src/weighting.ts)."""

    def __init__(self, channels=128):
        super().__init__()
        self.channels = channels
        self.linear = nn.Linear(channels, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t):
        return self.linear(positional_embedding(t, self.channels, sin_first=False))[:, 0]


def parameter_count(module):
    return sum(p.numel() for p in module.parameters())


def load_params(net, directory):
    """Copy the parameters exported by sct-step.js (manifest.json + params.bin, float32) into net."""
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    flat = np.fromfile(os.path.join(directory, "params.bin"), dtype=np.float32)
    state = net.state_dict()
    names = {p["name"] for p in manifest["params"]}
    missing = sorted(set(state) - names)
    extra = sorted(names - set(state))
    if missing or extra:
        raise SystemExit(f"parameter names differ: missing in the export {missing[:5]}, unknown here {extra[:5]}")
    with torch.no_grad():
        for p in manifest["params"]:
            value = torch.from_numpy(flat[p["offset"]: p["offset"] + math.prod(p["shape"])].copy()).reshape(p["shape"])
            if tuple(state[p["name"]].shape) != tuple(p["shape"]):
                raise SystemExit(f'{p["name"]}: shape {list(state[p["name"]].shape)} here, {p["shape"]} exported')
            state[p["name"]].copy_(value)
    return manifest


class Trainer:
    """The sCT training state and step (Algorithm 1 with the training loop's update)."""

    def __init__(self, net, batch, device, p_mean=-1.0, p_std=1.4, warmup_iters=10_000, norm_c=0.1, lr=1e-4):
        self.net, self.batch, self.device = net, batch, device
        self.head = WeightingHead().to(device)
        self.opt = torch.optim.RAdam(list(net.parameters()) + list(self.head.parameters()), lr=lr, betas=(0.9, 0.99), eps=1e-8)
        self.ema = [p.detach().clone() for p in net.parameters()]
        self.p_mean, self.p_std, self.warmup_iters, self.norm_c = p_mean, p_std, warmup_iters, norm_c
        self.iter, self.nimg = 0, 0

    def draw(self, x0):
        z = torch.randn_like(x0) * SIGMA_D
        tau = torch.randn(x0.shape[0], device=x0.device) * self.p_std + self.p_mean
        t = torch.atan(torch.exp(tau) / SIGMA_D).clamp(1e-4, math.pi / 2 - 1e-4)
        return z, t

    def tangent(self, x0, z, t):
        """The raw tangent g from one forward-mode pass w.r.t. (x_t/sd, t); no parameter tangents."""
        tb = t[:, None, None, None]
        xt = torch.cos(tb) * x0 + torch.sin(tb) * z
        dxdt = torch.cos(tb) * z - torch.sin(tb) * x0
        cs = torch.cos(t) * torch.sin(t)
        with torch.no_grad():
            F_, J = _jvp(self.net, (xt / SIGMA_D, t), (cs[:, None, None, None] * dxdt / SIGMA_D, cs))
            r = min(1.0, self.iter / self.warmup_iters) if self.warmup_iters > 0 else 1.0
            c, s = torch.cos(tb), torch.sin(tb)
            g = -(c * c) * (F_ * SIGMA_D - dxdt) - r * (c * s * xt + J * SIGMA_D)
        return xt, g

    def step(self, x0):
        z, t = self.draw(x0)
        xt, g = self.tangent(x0, z, t)
        norm = g.flatten(1).norm(dim=1)[:, None, None, None]
        g = g / (norm + self.norm_c)
        out = self.net(xt / SIGMA_D, t)
        d = out[0].numel()
        err = (out - out.detach() - g).square().flatten(1).sum(dim=1) / d
        w = self.head(t)
        loss = (torch.exp(w) * err - w).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        # EMA, EDM's half-life rule (500 kimg, ramp-up 0.05): ema <- p + beta (ema - p).
        half_life = min(500_000, self.nimg * 0.05)
        beta = 0.5 ** (x0.shape[0] / max(half_life, 1e-8))
        with torch.no_grad():
            for e, p in zip(self.ema, self.net.parameters()):
                e.lerp_(p, 1 - beta)
        self.iter += 1
        self.nimg += x0.shape[0]
        return loss


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    """(wall ms, process CPU ms) of one call, device work included."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return (time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000


def case_base(preset, image_size, batch):
    """The case name of one configuration (as bench/sct-step.js builds it)."""
    return f"sct {preset}{'' if image_size == 32 else f' {image_size}px'} b{batch}"


def bench_config(preset, batch, device, impl, args, records, params_dir):
    """Warm-up steps, then repetitions of (training step, forward, JVP), interleaved so that load changes hit all three alike."""
    torch.manual_seed(0)
    size = args.image_size
    net = UNet(**PRESETS[preset], image_size=size).to(device)
    if params_dir:
        load_params(net, params_dir)
    trainer = Trainer(net, batch, device)
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1  # pixels in [-1, 1], as the CIFAR-10 loader gives
    name = case_base(preset, size, batch)

    def forward():
        with torch.no_grad():
            return net(x0 / SIGMA_D, torch.full((batch,), 0.8, device=device))

    def jvp_only():
        z, t = trainer.draw(x0)
        return trainer.tangent(x0, z, t)

    for _ in range(args.warmup):
        trainer.step(x0)
    sync(device)
    runs, start, last = [], time.perf_counter(), 0.0
    # Another round only if it should end within the budget (at least one).
    while len(runs) < args.reps and (not runs or time.perf_counter() - start + last < args.budget_s):
        round_start = time.perf_counter()
        step = timed(lambda: trainer.step(x0), device)
        fwd = timed(forward, device)
        jvp = timed(jvp_only, device)
        runs.append((step, fwd, jvp))
        last = time.perf_counter() - round_start
    med = lambda f: statistics.median(f(r) for r in runs)
    step_ms, step_cpu = med(lambda r: r[0][0]), med(lambda r: r[0][1])
    fwd_ms, jvp_ms = med(lambda r: r[1][0]), med(lambda r: r[2][0])
    rest_ms = med(lambda r: r[0][0] - r[2][0])

    def add(case, unit, value):
        records.append({"case": case, "impl": impl, "unit": unit, "value": float(f"{value:.4g}")})

    add(f"{name} step", "img/s", batch / step_ms * 1000)
    if device.type == "cpu":  # CPU time means nothing where the work runs on a GPU
        add(f"{name} step", "img/s cpu-time", batch / step_cpu * 1000)
    add(f"{name} step", "ms", step_ms)
    add(f"{name} forward", "ms", fwd_ms)
    add(f"{name} jvp", "ms", jvp_ms)
    add(f"{name} grad+update", "ms", rest_ms)
    add(f"{name} step", "runs", len(runs))
    log(f"  {impl} {name}: step {step_ms:.1f} ms ({batch / step_ms * 1000:.2f} img/s; cpu time {step_cpu:.0f} ms), "
        f"forward {fwd_ms:.1f} ms, jvp {jvp_ms:.1f} ms, grad+update {rest_ms:.1f} ms; median of {len(runs)}")


def check(directory):
    """Our forward output and JVP tangent (exported by sct-step.js) against this network with the same weights."""
    if not os.path.exists(os.path.join(directory, "manifest.json")):
        raise SystemExit(f"--check: no manifest.json in {directory}")
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    net = UNet(**PRESETS[manifest["preset"]], image_size=manifest.get("imageSize", 32))
    load_params(net, directory)
    flat = np.fromfile(os.path.join(directory, "params.bin"), dtype=np.float32)
    arr = lambda key: torch.from_numpy(flat[manifest[key]["offset"]: manifest[key]["offset"] + math.prod(manifest[key]["shape"])].copy()).reshape(manifest[key]["shape"])
    y, t, vy, vt = arr("y"), arr("t"), arr("vy"), arr("vt")
    with torch.no_grad():
        out, tangent = _jvp(net, (y, t), (vy, vt))
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    result = {
        "preset": manifest["preset"],
        "params_torch": parameter_count(net),
        "params_ours": manifest["parameterCount"],
        "forward_rel_err": rel(out, arr("F")),
        "jvp_rel_err": rel(tangent, arr("J")),
    }
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="nano,tiny")
    ap.add_argument("--batch", default="32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", default="2", help="CPU threads, comma-separated (e.g. 2,1)")
    ap.add_argument("--image-size", type=int, default=32, help="smaller images only to check the scripts end to end")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=20.0, help="seconds of timed repetitions per config (at least one)")
    ap.add_argument("--params", help="directory with manifest.json + params.bin from sct-step.js (one preset)")
    ap.add_argument("--json", help="write records to FILE ('-': stdout)")
    ap.add_argument("--check", help="compare with the forward/JVP exported in DIR, print JSON, exit")
    ap.add_argument("--counts", action="store_true", help="print the parameter count of each preset and exit")
    args = ap.parse_args()

    if args.check:
        check(args.check)
        return
    if args.counts:
        print(json.dumps({p: parameter_count(UNet(**PRESETS[p])) for p in PRESETS}))
        return

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    presets = args.preset.split(",")
    batches = [int(b) for b in args.batch.split(",")]
    threads = [int(n) for n in args.threads.split(",")] if device.type == "cpu" else [None]
    params_manifest = {}
    if args.params:
        with open(os.path.join(args.params, "manifest.json")) as f:
            params_manifest = json.load(f)
        args.image_size = params_manifest.get("imageSize", 32)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPUs"
    log(f"PyTorch {torch.__version__} on {args.device} ({where}), float32")
    for p in presets:
        log(f"  {p}: {parameter_count(UNet(**PRESETS[p])):,} parameters")
    records = []
    for n in threads:
        if n is not None:
            torch.set_num_threads(n)
        impl = f"torch:{device.type}" if n in (None, 2) else f"torch:{device.type}:{n}t"
        for preset in presets:
            for batch in batches:
                pdir = args.params if params_manifest.get("preset") == preset else None
                bench_config(preset, batch, device, impl, args, records, pdir)
    if args.json == "-":
        print(json.dumps(records))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=2)


if __name__ == "__main__":
    main()
