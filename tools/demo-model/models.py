# SPDX-License-Identifier: Apache-2.0
"""Tiny PyTorch models for the Kinora demo pack, written from /work/shared/spec (not copied).

Module attribute names are chosen so that state_dict() keys are exactly the upstream key names:
  * T5Encoder          -> HF T5EncoderModel keys (shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight, ...)
  * AutoencoderKL      -> diffusers AutoencoderKL keys (encoder.down_blocks.i.resnets.j.conv1.weight, ...)
  * STDiT2             -> Open-Sora v1.1 STDiT2 keys (x_embedder.proj.weight, blocks.i.attn.qkv.weight, ...)
All math is float32; the bf16 quirks of upstream inference are deliberately not reproduced.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def attention(q, k, v, scale, key_mask=None, bias=None):
    """q [..., Lq, D], k/v [..., Lk, D]; key_mask [..., 1, Lk] bool (True = attend)."""
    s = torch.matmul(q, k.transpose(-1, -2))
    if scale != 1.0:
        s = s * scale
    if bias is not None:
        s = s + bias
    if key_mask is not None:
        s = s.masked_fill(~key_mask, torch.finfo(s.dtype).min)
    return torch.matmul(torch.softmax(s.float(), dim=-1).to(v.dtype), v)


# ----------------------------------------------------------------------------------------------
# T5 v1.1 encoder (spec t5-vae-formats.md §1)

class T5LayerNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class T5SelfAttention(nn.Module):
    def __init__(self, cfg, has_bias):
        super().__init__()
        d, nh, dk = cfg["d_model"], cfg["num_heads"], cfg["d_kv"]
        self.nh, self.dk = nh, dk
        self.q = nn.Linear(d, nh * dk, bias=False)
        self.k = nn.Linear(d, nh * dk, bias=False)
        self.v = nn.Linear(d, nh * dk, bias=False)
        self.o = nn.Linear(nh * dk, d, bias=False)
        if has_bias:
            self.relative_attention_bias = nn.Embedding(cfg["relative_attention_num_buckets"], nh)

    def forward(self, x, pos_bias):
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.nh, self.dk).transpose(1, 2)
        k = self.k(x).view(B, L, self.nh, self.dk).transpose(1, 2)
        v = self.v(x).view(B, L, self.nh, self.dk).transpose(1, 2)
        o = attention(q, k, v, 1.0, bias=pos_bias)  # no 1/sqrt(d) scaling in T5
        return self.o(o.transpose(1, 2).reshape(B, L, self.nh * self.dk))


class T5LayerSA(nn.Module):
    def __init__(self, cfg, has_bias):
        super().__init__()
        self.SelfAttention = T5SelfAttention(cfg, has_bias)
        self.layer_norm = T5LayerNorm(cfg["d_model"], cfg["layer_norm_epsilon"])


class T5DenseGated(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wi_0 = nn.Linear(cfg["d_model"], cfg["d_ff"], bias=False)
        self.wi_1 = nn.Linear(cfg["d_model"], cfg["d_ff"], bias=False)
        self.wo = nn.Linear(cfg["d_ff"], cfg["d_model"], bias=False)

    def forward(self, x):
        return self.wo(gelu_tanh(self.wi_0(x)) * self.wi_1(x))


class T5LayerFF(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.DenseReluDense = T5DenseGated(cfg)
        self.layer_norm = T5LayerNorm(cfg["d_model"], cfg["layer_norm_epsilon"])


class T5Block(nn.Module):
    def __init__(self, cfg, has_bias):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSA(cfg, has_bias), T5LayerFF(cfg)])

    def forward(self, x, pos_bias):
        sa, ff = self.layer
        x = x + sa.SelfAttention(sa.layer_norm(x), pos_bias)
        x = x + ff.DenseReluDense(ff.layer_norm(x))
        return x


class T5Stack(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.block = nn.ModuleList([T5Block(cfg, i == 0) for i in range(cfg["num_layers"])])
        self.final_layer_norm = T5LayerNorm(cfg["d_model"], cfg["layer_norm_epsilon"])


def t5_bucket(rel, num_buckets=32, max_distance=128):
    """Bidirectional T5 relative position bucket (spec §1.3); rel = key - query (long tensor)."""
    nb = num_buckets // 2
    ret = (rel > 0).long() * nb
    a = rel.abs()
    max_exact = nb // 2
    is_small = a < max_exact
    large = max_exact + (torch.log(a.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
                         * (nb - max_exact)).long()
    large = torch.minimum(large, torch.full_like(large, nb - 1))
    return ret + torch.where(is_small, a, large)


class T5Encoder(nn.Module):
    """HF T5EncoderModel layout: shared + encoder.{block, final_layer_norm}."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg["vocab_size"], cfg["d_model"])
        self.encoder = T5Stack(cfg)
        d, dk, nh, ff = cfg["d_model"], cfg["d_kv"], cfg["num_heads"], cfg["d_ff"]
        # T5-style init (scaled so that no q·k scaling is needed)
        with torch.no_grad():
            self.shared.weight.normal_(0, 1.0)
            for blk in self.encoder.block:
                a = blk.layer[0].SelfAttention
                a.q.weight.normal_(0, (d * dk) ** -0.5)
                a.k.weight.normal_(0, d ** -0.5)
                a.v.weight.normal_(0, d ** -0.5)
                a.o.weight.normal_(0, (nh * dk) ** -0.5)
                if hasattr(a, "relative_attention_bias"):
                    a.relative_attention_bias.weight.normal_(0, d ** -0.5)
                f = blk.layer[1].DenseReluDense
                f.wi_0.weight.normal_(0, d ** -0.5)
                f.wi_1.weight.normal_(0, d ** -0.5)
                f.wo.weight.normal_(0, ff ** -0.5)

    def forward(self, ids, mask):
        B, L = ids.shape
        x = self.shared(ids)
        pos = torch.arange(L, device=ids.device)
        bucket = t5_bucket(pos[None, :] - pos[:, None], self.cfg["relative_attention_num_buckets"],
                           self.cfg["relative_attention_max_distance"])
        rb = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias(bucket)  # [L,L,H]
        bias = rb.permute(2, 0, 1)[None]  # [1,H,L,L]
        neg = torch.finfo(x.dtype).min
        bias = bias + (1.0 - mask[:, None, None, :].to(x.dtype)) * neg
        for blk in self.encoder.block:
            x = blk(x, bias)
        return self.encoder.final_layer_norm(x)


# ----------------------------------------------------------------------------------------------
# diffusers AutoencoderKL (spec t5-vae-formats.md §3)

class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)
        else:
            self.conv_shortcut = None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VAEAttention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, c, eps=1e-6)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).view(B, C, H * W).transpose(1, 2)
        o = attention(self.to_q(h), self.to_k(h), self.to_v(h), C ** -0.5)
        o = self.to_out[0](o).transpose(1, 2).reshape(B, C, H, W)
        return o + x


class MidBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, groups), ResnetBlock2D(c, c, groups)])
        self.attentions = nn.ModuleList([VAEAttention(c, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, n, groups, down):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(n)])
        if down:
            self.downsamplers = nn.ModuleList([Downsample2D(cout)])
        else:
            self.downsamplers = None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpBlock(nn.Module):
    def __init__(self, cin, cout, n, groups, up):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(n)])
        if up:
            self.upsamplers = nn.ModuleList([Upsample2D(cout)])
        else:
            self.upsamplers = None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class VAEEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"]
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        blocks, cin = [], ch[0]
        for i, c in enumerate(ch):
            blocks.append(DownBlock(cin, c, n, g, i < len(ch) - 1))
            cin = c
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(ch[-1], g)
        self.conv_norm_out = nn.GroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg["latent_channels"], 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class VAEDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, g, n = cfg["block_out_channels"], cfg["norm_num_groups"], cfg["layers_per_block"]
        rch = list(reversed(ch))
        self.conv_in = nn.Conv2d(cfg["latent_channels"], rch[0], 3, padding=1)
        self.mid_block = MidBlock(rch[0], g)
        blocks, cin = [], rch[0]
        for i, c in enumerate(rch):
            blocks.append(UpBlock(cin, c, n + 1, g, i < len(ch) - 1))
            cin = c
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(g, rch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(rch[-1], cfg["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        lc = cfg["latent_channels"]
        self.encoder = VAEEncoder(cfg)
        self.decoder = VAEDecoder(cfg)
        self.quant_conv = nn.Conv2d(2 * lc, 2 * lc, 1)
        self.post_quant_conv = nn.Conv2d(lc, lc, 1)

    def encode(self, x):
        """x [N,3,H,W] in [-1,1] -> (mean, logvar) [N,lc,h,w] (unscaled)."""
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        """z [N,lc,h,w] (unscaled) -> image [N,3,H,W]."""
        return self.decoder(self.post_quant_conv(z))


# ----------------------------------------------------------------------------------------------
# STDiT2 (spec stdit.md §1, §3)

def timestep_embedding(t, dim=256, max_period=10000):
    """[B] float -> [B, dim], cos first then sin (spec §1.2)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, d, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, d), nn.SiLU(), nn.Linear(d, d))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.freq_dim))


class SizeEmbedder(TimestepEmbedder):
    def forward(self, s):
        """s [B, k] -> [B, k*d] (each scalar embedded separately, concatenated)."""
        B, k = s.shape
        e = self.mlp(timestep_embedding(s.reshape(-1), self.freq_dim))
        return e.reshape(B, k * e.shape[-1])


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class PatchEmbed3D(nn.Module):
    def __init__(self, cin, d, patch):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv3d(cin, d, kernel_size=patch, stride=patch)

    def forward(self, x):
        pt, ph, pw = self.patch
        _, _, T, H, W = x.shape
        x = F.pad(x, (0, (-W) % pw, 0, (-H) % ph, 0, (-T) % pt))
        return self.proj(x)  # [B, C, T', Hp, Wp]


class RoPE(nn.Module):
    """lucidrains rotary-embedding-torch, interleaved pairs; key rope.freqs [hd/2]."""

    def __init__(self, dim, theta=10000.0):
        super().__init__()
        self.freqs = nn.Parameter(1.0 / theta ** (torch.arange(0, dim, 2).float() / dim), requires_grad=False)

    def forward(self, x):
        """x [..., T, D]: rotate along the T axis (positions 0..T-1)."""
        T, D = x.shape[-2], x.shape[-1]
        th = torch.arange(T, dtype=x.dtype, device=x.device)[:, None] * self.freqs[None, :]  # [T, D/2]
        cos, sin = torch.cos(th), torch.sin(th)
        xr = x.reshape(*x.shape[:-1], D // 2, 2)
        x0, x1 = xr[..., 0], xr[..., 1]
        return torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], dim=-1).reshape(x.shape)


class SelfAttn(nn.Module):
    def __init__(self, d, nh, qk_norm=True):
        super().__init__()
        self.nh, self.hd = nh, d // nh
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = RMSNorm(self.hd) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.hd) if qk_norm else nn.Identity()
        self.proj = nn.Linear(d, d)

    def forward(self, x, rope=None):
        *lead, L, C = x.shape
        qkv = self.qkv(x).reshape(*lead, L, 3, self.nh, self.hd)
        q, k, v = (qkv.select(-3, i).transpose(-2, -3) for i in range(3))  # [..., nh, L, hd]
        if rope is not None:  # v1.1 released order: RoPE, then qk-norm
            q, k = rope(q), rope(k)
        q, k = self.q_norm(q), self.k_norm(k)
        o = attention(q, k, v, self.hd ** -0.5)
        return self.proj(o.transpose(-2, -3).reshape(*lead, L, C))


class CrossAttn(nn.Module):
    def __init__(self, d, nh):
        super().__init__()
        self.nh, self.hd = nh, d // nh
        self.q_linear = nn.Linear(d, d)
        self.kv_linear = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, y, ymask):
        """x [B, N, C]; y [B, L, C]; ymask [B, L] bool. Equivalent to the packed block-diagonal form."""
        B, N, C = x.shape
        L = y.shape[1]
        q = self.q_linear(x).reshape(B, N, self.nh, self.hd).transpose(1, 2)
        kv = self.kv_linear(y).reshape(B, L, 2, self.nh, self.hd)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        o = attention(q, k, v, self.hd ** -0.5, key_mask=ymask[:, None, None, :])
        return self.proj(o.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, din, dh, dout):
        super().__init__()
        self.fc1 = nn.Linear(din, dh)
        self.fc2 = nn.Linear(dh, dout)

    def forward(self, x):
        return self.fc2(gelu_tanh(self.fc1(x)))


class CaptionEmbedder(nn.Module):
    def __init__(self, cin, d, max_len):
        super().__init__()
        self.y_proj = Mlp(cin, d, d)
        # null caption; a buffer upstream. Here it is learned during training (see train.py) and
        # exported as the plain tensor y_embedder.y_embedding.
        self.y_embedding = nn.Parameter(torch.randn(max_len, cin) / cin ** 0.5)


def layer_norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class STDiT2Block(nn.Module):
    def __init__(self, d, nh, mlp_ratio, qk_norm):
        super().__init__()
        self.attn = SelfAttn(d, nh, qk_norm)
        self.attn_temp = SelfAttn(d, nh, qk_norm)
        self.cross_attn = CrossAttn(d, nh)
        self.mlp = Mlp(d, int(d * mlp_ratio), d)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d ** 0.5)
        self.scale_shift_table_temporal = nn.Parameter(torch.randn(3, d) / d ** 0.5)

    def forward(self, x, y, ymask, t_spc, t_tmp, t0_spc, t0_tmp, x_mask, rope):
        """x [B,T,S,C]; t_* [B, 6C] / [B, 3C]; x_mask [B,T] bool or None."""
        B, T, S, C = x.shape
        m = self.scale_shift_table[None] + t_spc.reshape(B, 6, C)     # [B,6,C]
        mt = self.scale_shift_table_temporal[None] + t_tmp.reshape(B, 3, C)
        m = m[:, None].expand(B, T, 6, C)
        mt = mt[:, None].expand(B, T, 3, C)
        if x_mask is not None:
            m0 = (self.scale_shift_table[None] + t0_spc.reshape(B, 6, C))[:, None]
            mt0 = (self.scale_shift_table_temporal[None] + t0_tmp.reshape(B, 3, C))[:, None]
            sel = x_mask[:, :, None, None]
            m = torch.where(sel, m, m0)
            mt = torch.where(sel, mt, mt0)
        m = m[:, :, :, None, :]   # [B,T,6,1,C]
        mt = mt[:, :, :, None, :]
        sh1, sc1, g1, sh2, sc2, g2 = (m[:, :, i] for i in range(6))  # [B,T,1,C]
        sh3, sc3, g3 = (mt[:, :, i] for i in range(3))
        # spatial
        x = x + g1 * self.attn(modulate(layer_norm(x), sh1, sc1))
        # temporal: sequences over T for each spatial position
        h = modulate(layer_norm(x), sh3, sc3).transpose(1, 2)          # [B,S,T,C]
        x = x + g3 * self.attn_temp(h, rope).transpose(1, 2)
        # cross attention on the full residual stream
        x = x + self.cross_attn(x.reshape(B, T * S, C), y, ymask).reshape(B, T, S, C)
        # mlp
        x = x + g2 * self.mlp(modulate(layer_norm(x), sh2, sc2))
        return x


class FinalLayer(nn.Module):
    def __init__(self, d, patch, cout):
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.linear = nn.Linear(d, patch[0] * patch[1] * patch[2] * cout)

    def forward(self, x, t, x_mask, t0_spc):
        """x [B,T,S,C]; t [B,C] (pure timestep embedding); t0_spc [B,C]."""
        shift, scale = (self.scale_shift_table[None] + t[:, None]).unbind(1)
        x1 = modulate(layer_norm(x), shift[:, None, None], scale[:, None, None])
        if x_mask is not None:
            shift0, scale0 = (self.scale_shift_table[None] + t0_spc[:, None]).unbind(1)
            x0 = modulate(layer_norm(x1), shift0[:, None, None], scale0[:, None, None])  # double LN quirk
            x1 = torch.where(x_mask[:, :, None, None], x1, x0)
        return self.linear(x1)


def pos_embed_2d(hp, wp, d, scale, base_size, device=None):
    """PositionEmbedding2D (spec §3.6) -> [hp*wp, d]."""
    half = d // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, half, 2, dtype=torch.float32, device=device) / half))
    ch = (torch.arange(hp, dtype=torch.float32, device=device) / scale) * (base_size / hp)
    cw = (torch.arange(wp, dtype=torch.float32, device=device) / scale) * (base_size / wp)
    eh = torch.outer(ch, inv_freq)  # [hp, half/2]
    ew = torch.outer(cw, inv_freq)
    ew = torch.cat([torch.sin(ew), torch.cos(ew)], -1)  # [wp, half]
    eh = torch.cat([torch.sin(eh), torch.cos(eh)], -1)
    pe = torch.cat([ew[None, :, :].expand(hp, wp, half), eh[:, None, :].expand(hp, wp, half)], -1)
    return pe.reshape(hp * wp, d)


class STDiT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, nh = cfg["hidden_size"], cfg["num_heads"]
        self.d = d
        self.patch = tuple(cfg["patch_size"])
        self.cin = cfg["in_channels"]
        self.cout = 2 * self.cin if cfg["pred_sigma"] else self.cin
        hd = d // nh
        self.x_embedder = PatchEmbed3D(self.cin, d, self.patch)
        self.t_embedder = TimestepEmbedder(d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.t_block_temp = nn.Sequential(nn.SiLU(), nn.Linear(d, 3 * d))
        self.y_embedder = CaptionEmbedder(cfg["caption_channels"], d, cfg["model_max_length"])
        self.rope = RoPE(hd)
        self.blocks = nn.ModuleList([STDiT2Block(d, nh, cfg["mlp_ratio"], cfg["qk_norm"])
                                     for _ in range(cfg["depth"])])
        self.final_layer = FinalLayer(d, self.patch, self.cout)
        self.csize_embedder = SizeEmbedder(d // 3)
        self.ar_embedder = SizeEmbedder(d // 3)
        self.fl_embedder = SizeEmbedder(d)
        self.fps_embedder = SizeEmbedder(d)
        self._init()

    def _init(self):
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        for e in (self.t_embedder, self.csize_embedder, self.ar_embedder, self.fl_embedder, self.fps_embedder):
            nn.init.normal_(e.mlp[0].weight, std=0.02)
            nn.init.normal_(e.mlp[2].weight, std=0.02)
        nn.init.normal_(self.t_block[1].weight, std=0.02)
        nn.init.normal_(self.t_block_temp[1].weight, std=0.02)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.y_embedder.y_proj.fc1.weight, std=0.02)
        nn.init.normal_(self.y_embedder.y_proj.fc2.weight, std=0.02)
        for b in self.blocks:
            nn.init.zeros_(b.cross_attn.proj.weight)
            nn.init.zeros_(b.cross_attn.proj.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x, timestep, y, ymask, height, width, num_frames, ar, fps, x_mask=None,
                force_drop=None):
        """x [B,Cin,T,H,W]; timestep [B]; y [B,L,caption_channels]; ymask [B,L];
        height/width/num_frames/ar/fps [B] float; x_mask [B,T] bool (True = noisy frame) or None;
        force_drop [B] bool: replace the caption by the null embedding (CFG training)."""
        B, _, T, H, W = x.shape
        pt, ph, pw = self.patch
        Tp, Hp, Wp = -(-T // pt), -(-H // ph), -(-W // pw)
        S = Hp * Wp
        rs = math.sqrt(float(height[0]) * float(width[0]))
        scale = rs / self.cfg["input_sq_size"]
        base_size = round(math.sqrt(S))
        pos = pos_embed_2d(Hp, Wp, self.d, scale, base_size, x.device)
        h = self.x_embedder(x)                                  # [B,C,T,Hp,Wp]
        h = h.flatten(3).permute(0, 2, 3, 1) + pos[None, None]  # [B,T,S,C]

        t = self.t_embedder(timestep)
        csize = self.csize_embedder(torch.stack([height, width], 1))
        data_info = torch.cat([csize, self.ar_embedder(ar[:, None])], 1)
        fl = self.fl_embedder(num_frames[:, None]) + self.fps_embedder(fps[:, None])
        t_spc = self.t_block(t + data_info)
        t_tmp = self.t_block_temp(t + fl)
        t0_spc = t0_tmp = t0_spc_pure = None
        if x_mask is not None:
            t0 = self.t_embedder(torch.zeros_like(timestep))
            t0_spc_pure = t0 + data_info
            t0_spc = self.t_block(t0_spc_pure)
            t0_tmp = self.t_block_temp(t0 + fl)

        if force_drop is not None:
            null = self.y_embedder.y_embedding[None, : y.shape[1]].expand_as(y)
            y = torch.where(force_drop[:, None, None], null, y)
        yy = self.y_embedder.y_proj(y)
        ym = ymask.bool()

        for blk in self.blocks:
            h = blk(h, yy, ym, t_spc, t_tmp, t0_spc, t0_tmp, x_mask, self.rope)
        h = self.final_layer(h, t, x_mask, t0_spc_pure)         # [B,T,S,p*Cout]
        h = h.reshape(B, Tp, Hp, Wp, pt, ph, pw, self.cout)
        h = h.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(B, self.cout, Tp * pt, Hp * ph, Wp * pw)
        return h[:, :, :T, :H, :W].float()
