# SPDX-License-Identifier: Apache-2.0
"""Helpers for the demo pack: safetensors I/O, tokenizer, IDDPM (spec stdit.md §4.1/4.2/4.5)."""
import json
import math
import struct

import numpy as np
import torch

# ------------------------------------------------------------------ safetensors (own writer/reader)

_DT = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("int32"): "I32",
       np.dtype("float16"): "F16", np.dtype("uint8"): "U8"}
_ND = {v: k for k, v in _DT.items()}


def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array / torch tensor. Writes keys in sorted order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().contiguous().numpy()
        a = np.ascontiguousarray(a)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        b = a.tobytes()
        header[name] = {"dtype": _DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = metadata or {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[s:e], dtype=_ND[v["dtype"]]).reshape(v["shape"]).copy())
    return out


# ------------------------------------------------------------------ tokenizer

class Tokenizer:
    """T5-style: spm ids + </s> (1), right-padded with 0 to max_length, truncation keeps EOS."""

    def __init__(self, model_path, max_length):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.L = max_length

    def __call__(self, texts):
        ids = np.zeros((len(texts), self.L), dtype=np.int64)
        mask = np.zeros((len(texts), self.L), dtype=np.int64)
        for i, t in enumerate(texts):
            p = self.sp.encode(t.strip().lower())[: self.L - 1] + [1]
            ids[i, : len(p)] = p
            mask[i, : len(p)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)


# ------------------------------------------------------------------ IDDPM

class Diffusion:
    """Linear betas, 1000 steps, learned-range variance, eps prediction. Tables float64."""

    def __init__(self, steps=1000, use_timesteps=None):
        betas = np.linspace(1e-4, 0.02, steps, dtype=np.float64)
        ac = np.cumprod(1.0 - betas)
        self.timestep_map = np.arange(steps)
        if use_timesteps is not None:  # respacing
            last, nb = 1.0, []
            for i, a in enumerate(ac):
                if i in use_timesteps:
                    nb.append(1 - a / last)
                    last = a
            betas = np.array(nb, dtype=np.float64)
            ac = np.cumprod(1.0 - betas)
            self.timestep_map = np.array(sorted(use_timesteps))
        self.betas = betas
        self.num = len(betas)
        self.ac = ac
        self.ac_prev = np.append(1.0, ac[:-1])
        self.post_var = betas * (1 - self.ac_prev) / (1 - ac)
        self.post_lv = np.log(np.append(self.post_var[1], self.post_var[1:]))
        self.c1 = betas * np.sqrt(self.ac_prev) / (1 - ac)
        self.c2 = (1 - self.ac_prev) * np.sqrt(1 - betas) / (1 - ac)

    def _g(self, arr, t, nd):
        v = torch.from_numpy(arr).float().to(t.device)[t]
        return v.reshape(-1, *([1] * (nd - 1)))

    def q_sample(self, x0, t, noise):
        return self._g(np.sqrt(self.ac), t, x0.ndim) * x0 + self._g(np.sqrt(1 - self.ac), t, x0.ndim) * noise

    def p_mean_var(self, out, x, t):
        C = x.shape[1]
        eps, v = out[:, :C], out[:, C:]
        minl = self._g(self.post_lv, t, x.ndim)
        maxl = self._g(np.log(self.betas), t, x.ndim)
        frac = (v + 1) / 2
        logvar = frac * maxl + (1 - frac) * minl
        x0 = self._g(np.sqrt(1 / self.ac), t, x.ndim) * x - self._g(np.sqrt(1 / self.ac - 1), t, x.ndim) * eps
        mean = self._g(self.c1, t, x.ndim) * x0 + self._g(self.c2, t, x.ndim) * x
        return mean, logvar, x0

    def vb_term(self, out, x0, xt, t):
        """KL(q(x_{t-1}|x_t,x0) || p) in bits per element, [B, C, T, H, W] (t == 0 -> 0)."""
        mean, logvar, _ = self.p_mean_var(out, xt, t)
        tmean = self._g(self.c1, t, x0.ndim) * x0 + self._g(self.c2, t, x0.ndim) * xt
        tlv = self._g(self.post_lv, t, x0.ndim)
        kl = 0.5 * (-1.0 + logvar - tlv + torch.exp(tlv - logvar) + (tmean - mean) ** 2 * torch.exp(-logvar))
        kl = kl / math.log(2.0)
        return kl * (t > 0).float().reshape(-1, *([1] * (x0.ndim - 1)))


def space_timesteps(num_timesteps, k):
    """Open-Sora/IDDPM respacing of one section into k steps (repeated addition, round half even)."""
    if k == 1:
        return {0}
    stride = (num_timesteps - 1) / (k - 1)
    cur, out = 0.0, set()
    for _ in range(k):
        out.add(round(cur))
        cur += stride
    return out


@torch.no_grad()
def sample_iddpm(model_fn, shape, steps, generator, cfg_scale=7.0, cfg_channels=3, x_ref=None, mask=None):
    """IDDPM ancestral sampling with CFG. model_fn(x [2B..], t [2B]) -> out [2B, 2C, ...] where the
    first half of the batch is conditional and the second half unconditional.
    mask [B, T] float (1 = generate, 0 = keep x_ref frame), spec §4.5."""
    dif = Diffusion(1000, space_timesteps(1000, steps))
    x = torch.randn(*shape, generator=generator)
    B = shape[0]
    if x_ref is not None and mask is not None:
        keep = (mask < 1)[:, None, :, None, None]
        x = torch.where(keep, x_ref, x)
    for i in reversed(range(dif.num)):
        t = torch.full((B,), i, dtype=torch.long)
        x_mask = None
        if mask is not None:
            mt = (mask * dif.num).long()
            x0c = x.clone()
            noise = torch.randn(*shape, generator=generator)
            xn = dif.q_sample(x0c, t, noise)
            sel = (mt == i)[:, None, :, None, None]
            x = torch.where(sel, xn, x)
            x_mask = mt > i
        tt = torch.from_numpy(dif.timestep_map[t.numpy()]).float()
        xin = torch.cat([x, x], 0)
        out = model_fn(xin, torch.cat([tt, tt], 0), None if x_mask is None else torch.cat([x_mask, x_mask], 0))
        C = shape[1]
        cond, unc = out[:B], out[B:]
        eps = cond[:, :C].clone()
        eps[:, :cfg_channels] = unc[:, :cfg_channels] + cfg_scale * (cond[:, :cfg_channels] - unc[:, :cfg_channels])
        o = torch.cat([eps, cond[:, C:]], 1)
        mean, logvar, _ = dif.p_mean_var(o, x, t)
        if i > 0:
            x = mean + torch.exp(0.5 * logvar) * torch.randn(*shape, generator=generator)
        else:
            x = mean
        if mask is not None:
            keep = (mt < i)[:, None, :, None, None]
            x = torch.where(keep, x0c, x)
    return x
