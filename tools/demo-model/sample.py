#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Generate clips with the demo pack in PyTorch (reference for the C engine) and measure prompt following.

  sample.py "a red circle moving right on a black background" --png out.png
  sample.py --eval            # 10 fixed prompts: colour / shape / direction accuracy
  sample.py --x0-check WORK   # x0 error per noise level on training clips of a make-pack.sh WORK folder

Sampling: IDDPM (linear betas, 1000 steps respaced to --steps), classifier-free guidance with the
learned null caption (y_embedder.y_embedding), guidance applied to the first --cfg-channels eps
channels (default 3 as in Open-Sora v1.1; the pack was trained with dropout on all channels, so 4
works as well).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
from models import T5Encoder, AutoencoderKL, STDiT2  # noqa: E402
from util import Diffusion, Tokenizer, load_safetensors, sample_iddpm  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PACK = os.path.join(HERE, "..", "..", "data", "models", "kinora-demo")


class Pack:
    def __init__(self, path):
        j = lambda *p: json.load(open(os.path.join(path, *p)))  # noqa: E731
        self.t5cfg = j("text_encoder", "config.json")
        self.vaecfg = j("vae", "config.json")
        self.ditcfg = j("transformer", "config.json")
        self.t5 = T5Encoder(self.t5cfg)
        self.t5.load_state_dict(load_safetensors(os.path.join(path, "text_encoder", "model.safetensors")))
        self.vae = AutoencoderKL(self.vaecfg)
        self.vae.load_state_dict(load_safetensors(os.path.join(path, "vae", "diffusion_pytorch_model.safetensors")))
        self.dit = STDiT2(self.ditcfg)
        self.dit.load_state_dict(load_safetensors(os.path.join(path, "transformer", "model.safetensors")))
        for m in (self.t5, self.vae, self.dit):
            m.eval()
        self.L = self.ditcfg["model_max_length"]
        self.tok = Tokenizer(os.path.join(path, "text_encoder", "spiece.model"), self.L)
        self.sf = self.vaecfg["scaling_factor"]
        self.down = 2 ** (len(self.vaecfg["block_out_channels"]) - 1)

    @torch.no_grad()
    def encode_text(self, prompts):
        ids, mask = self.tok(prompts)
        return ids, mask, self.t5(ids, mask)

    @torch.no_grad()
    def decode(self, z):
        """z [B,4,T,h,w] scaled latents -> video [B,3,T,H,W] in [-1,1]."""
        B, C, T, h, w = z.shape
        x = self.vae.decode(z.transpose(1, 2).reshape(B * T, C, h, w) / self.sf)
        return x.reshape(B, T, 3, *x.shape[-2:]).transpose(1, 2)

    @torch.no_grad()
    def encode_video(self, v):
        B, C, T, H, W = v.shape
        m, _ = self.vae.encode(v.transpose(1, 2).reshape(B * T, C, H, W))
        return (m * self.sf).reshape(B, T, *m.shape[1:]).transpose(1, 2)

    def cond(self, B, H=64, W=64, T=16, fps=24.0):
        f = lambda v: torch.full((B,), float(v))  # noqa: E731
        return f(H), f(W), f(T), f(H / W), f(fps)

    @torch.no_grad()
    def generate(self, prompt, seed=0, steps=50, cfg=7.0, cfg_channels=3, T=16, H=64, W=64,
                 ref_video=None, keep_frames=0):
        _, mask, y = self.encode_text([prompt])
        null = self.dit.y_embedder.y_embedding[None, : self.L]
        yy = torch.cat([y, null], 0)
        mm = torch.cat([mask, mask], 0)
        h, w, nf, ar, fps = self.cond(2, H, W, T)

        def fn(x, t, x_mask):
            return self.dit(x, t, yy, mm, h, w, nf, ar, fps, x_mask=x_mask)

        g = torch.Generator().manual_seed(seed)
        shape = (1, self.ditcfg["in_channels"], T, H // self.down, W // self.down)
        x_ref = fmask = None
        if ref_video is not None and keep_frames > 0:
            x_ref = self.encode_video(ref_video)
            fmask = torch.ones(1, T)
            fmask[:, :keep_frames] = 0
        z = sample_iddpm(fn, shape, steps, g, cfg, cfg_channels, x_ref=x_ref, mask=fmask)
        return self.decode(z)


def to_uint8(v):  # [3,T,H,W] [-1,1] -> [T,H,W,3]
    return ((v.permute(1, 2, 3, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)


def save_strip(videos, path):
    from PIL import Image
    rows = [np.concatenate(list(to_uint8(v)), axis=1) for v in videos]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


# ------------------------------------------------------------------------------ analysis
PALETTE = {k: np.array(v) for k, v in dataset.COLOURS.items()}


def analyse(frames):
    """frames [T,H,W,3] uint8 -> dict(colour, shape, direction) by simple image analysis."""
    f = frames.astype(np.float64) / 255.0
    T = f.shape[0]
    border = np.concatenate([f[:, :2].reshape(T, -1, 3), f[:, -2:].reshape(T, -1, 3),
                             f[:, :, :2].reshape(T, -1, 3), f[:, :, -2:].reshape(T, -1, 3)], 1)
    bg = np.median(border, axis=1)[:, None, None, :]
    diff = np.abs(f - bg).max(-1)
    fg = diff > 0.3
    res = {"colour": None, "shape": None, "direction": None}
    if fg.sum() < 8:
        return res
    col = f[fg].mean(0)
    res["colour"] = min(PALETTE, key=lambda k: np.sum((PALETTE[k] - col) ** 2))
    fills, cents = [], []
    for t in range(T):
        ys, xs = np.nonzero(fg[t])
        if len(ys) < 6:
            cents.append(None)
            continue
        cents.append((xs.mean(), ys.mean()))
        area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fills.append(len(ys) / area)
    if fills:
        fr = float(np.median(fills))
        res["fill"] = fr
        res["shape"] = "square" if fr > 0.88 else ("circle" if fr > 0.64 else "triangle")
    a = [c for c in cents[: T // 4] if c is not None]
    b = [c for c in cents[-(T // 4):] if c is not None]
    if a and b:
        dx = np.mean([c[0] for c in b]) - np.mean([c[0] for c in a])
        dy = np.mean([c[1] for c in b]) - np.mean([c[1] for c in a])
        res["motion"] = (round(float(dx), 1), round(float(dy), 1))
        if max(abs(dx), abs(dy)) >= 4:
            if abs(dx) > abs(dy):
                res["direction"] = "right" if dx > 0 else "left"
            else:
                res["direction"] = "down" if dy > 0 else "up"
        else:
            res["direction"] = "still"
    return res


EVAL = [("red", "circle", "right"), ("green", "square", "left"), ("blue", "triangle", "up"),
        ("yellow", "circle", "down"), ("white", "square", "right"), ("purple", "triangle", "left"),
        ("orange", "circle", "up"), ("cyan", "square", "down"), ("red", "triangle", "right"),
        ("blue", "circle", "left")]


@torch.no_grad()
def x0_check(pack, work):
    """MSE between the x0 the DiT's eps prediction implies and the true latent, per t, on the first
    48 black-background moving clips of the tight training set (caption as trained, fixed noise).
    With eps-prediction the x0 error is the eps error / SNR(t): the noisy steps (t >= 600), which
    decide where the shape is and how it moves, are the ones plain eps-MSE trains least."""
    caps = json.load(open(os.path.join(work, "captions-tight.json")))
    lat = torch.from_numpy(np.load(os.path.join(work, "latents-tight.npy")))
    idx = [i for i, c in enumerate(caps) if "black" in c and "moving" in c][:48]
    ids, mask, y = pack.encode_text([caps[i] for i in idx])
    x0 = lat[idx]
    B = len(idx)
    acs = Diffusion(1000).ac  # the trainer's linear-beta schedule
    for tv in (200, 400, 600, 800, 900):
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(tv))
        ac = float(acs[tv])
        xt = ac ** 0.5 * x0 + (1 - ac) ** 0.5 * noise
        eps = pack.dit(xt, torch.full((B,), float(tv)), y, mask, *pack.cond(B))[:, : x0.shape[1]]
        x0p = (xt - (1 - ac) ** 0.5 * eps) / ac ** 0.5
        print("t = %d: x0 MSE %.4f" % (tv, ((x0p - x0) ** 2).mean().item()), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prompt", nargs="*")
    ap.add_argument("--pack", default=DEFAULT_PACK)
    ap.add_argument("--png", default="sample.png")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--cfg", type=float, default=7.0)
    ap.add_argument("--cfg-channels", type=int, default=3)
    ap.add_argument("--eval", action="store_true", help="score the 10 fixed prompts")
    ap.add_argument("--check-analysis", action="store_true", help="score the analysis on real dataset clips")
    ap.add_argument("--x0-check", metavar="WORK",
                    help="error of the x0 implied by eps on training clips of a make-pack.sh work folder")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.check_analysis:
        ok = n = 0
        for i, (c, v) in enumerate(dataset.make_clips(60, 7)):
            words = c.split()
            if words[3] != "moving" or words[-2] != "black":
                continue
            r = analyse(to_uint8(torch.from_numpy(v)))
            good = (r["colour"] == words[1], r["shape"] == words[2], r["direction"] == words[4])
            ok += sum(good)
            n += 3
            if not all(good):
                print(c, r)
        print("analysis self-check: %d/%d" % (ok, n))
        return
    pack = Pack(args.pack)
    if args.x0_check:
        x0_check(pack, args.x0_check)
        return
    if args.eval:
        vids, score = [], {"colour": 0, "shape": 0, "direction": 0}
        for i, (c, s, d) in enumerate(EVAL):
            art = "an" if c[0] in "aeiou" else "a"
            p = "%s %s %s moving %s on a black background" % (art, c, s, d)
            v = pack.generate(p, seed=args.seed + i, steps=args.steps, cfg=args.cfg,
                              cfg_channels=args.cfg_channels)[0]
            vids.append(v)
            r = analyse(to_uint8(v))
            for k, want in (("colour", c), ("shape", s), ("direction", d)):
                score[k] += int(r[k] == want)
            print("%-50s -> %s" % (p, r), flush=True)
        print("prompt following over %d prompts: colour %d/10, shape %d/10, direction %d/10" % (
            len(EVAL), score["colour"], score["shape"], score["direction"]))
        save_strip(vids, args.png)
        return
    prompt = " ".join(args.prompt) or "a red circle moving right on a black background"
    v = pack.generate(prompt, seed=args.seed, steps=args.steps, cfg=args.cfg, cfg_channels=args.cfg_channels)
    save_strip(v, args.png)
    print(prompt, analyse(to_uint8(v[0])))


if __name__ == "__main__":
    main()
