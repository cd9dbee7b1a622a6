#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Train the Kinora demo model pack on the procedural toy world (CPU, a few minutes per stage).

Stages (each cached in --work, re-run with --stages):
  spm    SentencePiece unigram vocabulary (Debian spm_train), T5 special ids pad 0 / eos 1 / unk 2
  data   render the clips (dataset.py), deterministic from --seed
  vae    AutoencoderKL: reconstruction (MSE + L1) + small KL on 32x32 crops
  vaefull  the same on whole 64x64 frames, continuing from vae
  lat    encode every clip with the VAE posterior mean; scaling_factor = 1/std(latents)
  tdata, tlat  a second clip set with the random variation shrunk (--tight-spread) and its latents
  dit    STDiT2 + T5 encoder jointly, IDDPM objective: eps MSE + VLB (hybrid, IDDPM "learned range")
  export write data/models/kinora-demo/{text_encoder,vae,transformer}
"""
import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
from models import T5Encoder, AutoencoderKL, STDiT2  # noqa: E402
from util import Tokenizer, Diffusion, save_safetensors  # noqa: E402

MAX_LEN = 64
VAE_DOWN = 8  # 2 ** (len(block_out_channels) - 1)

T5_CFG = dict(d_model=128, d_kv=32, d_ff=256, num_heads=4, num_layers=3,
              relative_attention_num_buckets=32, relative_attention_max_distance=128,
              layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", vocab_size=None)
VAE_CFG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16, 32, 32],
               layers_per_block=1, norm_num_groups=4, act_fn="silu", sample_size=64,
               down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
               scaling_factor=None)
DIT_CFG = dict(depth=3, hidden_size=144, num_heads=3, patch_size=[1, 2, 2], in_channels=4,
               caption_channels=128, model_max_length=MAX_LEN, mlp_ratio=4.0, qk_norm=True,
               input_sq_size=64, pred_sigma=True)


def log(*a):
    print("[%7.1fs]" % (time.time() - T0), *a, flush=True)


T0 = time.time()


# ------------------------------------------------------------------------------------------ spm
def stage_spm(args):
    # the caption vocabulary weighted by how often it occurs, plus some general English so that
    # free-form prompts still tokenize into sensible pieces (the model only knows the toy world)
    caps = [c for c, _ in dataset.make_clips(4000, args.seed + 100, render=False)]
    extra = ("a an the of on in at to and with is are video clip image picture shape shapes object "
             "ball box block star heart ring dot moving moves move slowly fast quickly bouncing growing "
             "shrinking rising falling sliding spinning rotating flying floating big small large tiny bright "
             "dark light black white red green blue yellow orange purple pink cyan brown gray grey magenta "
             "background sky sunset gradient plain left right up down across towards from into over under "
             "circle square triangle rectangle diamond cube sphere one two three beautiful simple colorful "
             "cat dog car tree house water ocean forest city night day sun moon person man woman").split()
    path = os.path.join(args.work, "captions.txt")
    with open(path, "w") as f:
        for c in caps:
            f.write(c + "\n")
        for i in range(0, len(extra), 6):
            f.write(" ".join(extra[i:i + 6]) + "\n")
    prefix = os.path.join(args.work, "spiece")
    cmd = ["spm_train", "--input=" + path, "--model_prefix=" + prefix, "--vocab_size=%d" % args.vocab,
           "--model_type=unigram", "--pad_id=0", "--eos_id=1", "--unk_id=2", "--bos_id=-1",
           "--pad_piece=<pad>", "--eos_piece=</s>", "--unk_piece=<unk>", "--character_coverage=1.0",
           "--hard_vocab_limit=false", "--seed_sentencepiece_size=100000", "--num_threads=1",
           "--minloglevel=1"]
    subprocess.run(cmd, check=True)
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    log("spm: vocab", sp.get_piece_size(), "e.g.", sp.encode("a red circle moving right on a black background",
                                                              out_type=str))


# ------------------------------------------------------------------------------------------ data
def stage_data(args, tight=False):
    caps, vids = [], np.zeros((args.clips, 16, 64, 64, 3), dtype=np.uint8)
    # where the shape is, on the latent grid (8x8 pixel cells, max-pooled coverage): the DiT loss
    # weights these cells up (--dit-fg-weight), since the small shape is what the caption decides
    objs = np.zeros((args.clips, 16, 64 // VAE_DOWN, 64 // VAE_DOWN), dtype=np.uint8)
    spread = args.tight_spread if tight else 1.0
    for i, (c, v, cov) in enumerate(dataset.make_clips(args.clips, args.seed + (7 if tight else 0),
                                                       with_coverage=True, spread=spread)):
        caps.append(c)
        vids[i] = ((v.transpose(1, 2, 3, 0) + 1) * 127.5 + 0.5).clip(0, 255).astype(np.uint8)
        cells = cov.reshape(16, 64 // VAE_DOWN, VAE_DOWN, 64 // VAE_DOWN, VAE_DOWN).max(axis=(2, 4))
        objs[i] = (cells * 255 + 0.5).astype(np.uint8)
    sfx = "-tight" if tight else ""
    np.save(os.path.join(args.work, "videos%s.npy" % sfx), vids)
    np.save(os.path.join(args.work, "objects%s.npy" % sfx), objs)
    with open(os.path.join(args.work, "captions%s.json" % sfx), "w") as f:
        json.dump(caps, f)
    log("data: %d clips (spread %.2f)" % (len(caps), spread))


def stage_tdata(args):
    """The "tight" clip set for the last DiT phase: the same captions' world with the random
    variation of size, speed and position shrunk (--tight-spread), so that a caption determines
    its clip almost exactly and the small model's averaged predictions stay sharp."""
    stage_data(args, tight=True)


def load_videos(args, tight=False):
    return np.load(os.path.join(args.work, "videos%s.npy" % ("-tight" if tight else "")), mmap_mode="r")


def to_float(u8):  # [..., H, W, 3] uint8 -> [..., 3, H, W] float in [-1, 1]
    x = torch.from_numpy(np.ascontiguousarray(u8)).float() / 127.5 - 1
    return x.movedim(-1, -3)


# ------------------------------------------------------------------------------------------ vae
def stage_vae(args, full=False):
    torch.manual_seed(args.seed + (5 if full else 1))
    vids = load_videos(args)
    n = vids.shape[0]
    frames = vids.reshape(n * 16, 64, 64, 3)
    vae = AutoencoderKL(VAE_CFG)
    if full:  # fine-tune the crop-trained VAE on whole frames (GroupNorm statistics, frame borders)
        vae.load_state_dict(torch.load(os.path.join(args.work, "vae.pt")))
    else:
        with torch.no_grad():  # start with a small posterior variance so the noise does not swamp the mean
            vae.quant_conv.bias[VAE_CFG["latent_channels"]:] = -6.0
    log("vae params %.2fM" % (sum(p.numel() for p in vae.parameters()) / 1e6))
    opt = torch.optim.Adam(vae.parameters(), lr=args.vae_lr)
    rng = np.random.default_rng(args.seed + (5 if full else 1))
    t_start = time.time()
    t_end = t_start + args.vae_minutes * 60
    max_steps = args.vae_full_steps if full else args.vae_max_steps
    crop = 64 if full else args.vae_crop
    step = 0
    while time.time() < t_end and step < max_steps:
        frac = max((time.time() - t_start) / (t_end - t_start), step / max_steps)
        for g in opt.param_groups:  # linear decay to 20%
            g["lr"] = args.vae_lr * (1 - 0.8 * frac)
        idx = np.sort(rng.choice(frames.shape[0], args.vae_batch, replace=False))
        x = to_float(frames[idx])
        if crop < 64:  # fully convolutional: train on 8-aligned random crops (4x cheaper)
            oy, ox = (int(v) * 8 for v in rng.integers(0, (64 - crop) // 8 + 1, 2))
            x = x[:, :, oy:oy + crop, ox:ox + crop]
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = vae.decode(z)
        mse = F.mse_loss(rec, x)
        l1 = (rec - x).abs().mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
        loss = mse + 0.5 * l1 + args.vae_kl * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            log("vae step %d mse %.5f l1 %.4f kl %.3f" % (step, mse.item(), l1.item(), kl.item()))
    torch.save(vae.state_dict(), os.path.join(args.work, "vae.pt"))
    if full:
        with open(os.path.join(args.work, "vae-full.done"), "w") as f:
            f.write("%d\n" % step)
    log("vae%s: %d steps" % (" (whole frames)" if full else "", step))


def stage_vaefull(args):
    """Second VAE stage: whole 64x64 frames. Trained on 32x32 crops alone, the VAE reconstructs
    whole frames badly (colours shift, small shapes vanish, borders glow)."""
    stage_vae(args, full=True)





def load_vae(args):
    vae = AutoencoderKL(VAE_CFG)
    vae.load_state_dict(torch.load(os.path.join(args.work, "vae.pt")))
    vae.eval()
    return vae


def stage_lat(args, tight=False):
    vae = load_vae(args)
    vids = load_videos(args, tight)
    n = vids.shape[0]
    out = None
    with torch.no_grad():
        for i in range(0, n, 16):
            x = to_float(vids[i:i + 16].reshape(-1, 64, 64, 3))
            m, _ = vae.encode(x)
            m = m.reshape(-1, 16, *m.shape[1:]).transpose(1, 2)  # [b,4,T,h,w]
            if out is None:
                out = np.zeros((n,) + tuple(m.shape[1:]), dtype=np.float32)
            out[i:i + 16] = m.numpy()
            if i == 0:
                rec = vae.decode(m.transpose(1, 2).reshape(-1, *m.shape[1:2], *m.shape[3:]))
                log("lat: recon mse on first clips %.5f" % F.mse_loss(rec, x).item())
    if tight:  # same VAE, same scaling factor as the main clip set
        sf = json.load(open(os.path.join(args.work, "scaling_factor.json")))["scaling_factor"]
        np.save(os.path.join(args.work, "latents-tight.npy"), out * sf)
        log("lat: tight latents", out.shape, "scaled std %.3f" % (out * sf).std())
        return
    sf = float(1.0 / out.std())
    log("lat: latents", out.shape, "mean %.3f std %.3f -> scaling_factor %.5f" % (out.mean(), out.std(), sf))
    np.save(os.path.join(args.work, "latents.npy"), out * sf)
    with open(os.path.join(args.work, "scaling_factor.json"), "w") as f:
        json.dump({"scaling_factor": sf}, f)


def stage_tlat(args):
    stage_lat(args, tight=True)




# ------------------------------------------------------------------------------------------ dit
def t5_config(args):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.work, "spiece.model"))
    cfg = dict(T5_CFG)
    cfg["vocab_size"] = sp.get_piece_size()
    return cfg


def random_cond(rng, B, jitter):
    """height, width, num_frames, ar, fps for B samples (the data is always 64x64x16)."""
    h = np.full(B, 64.0)
    w = np.full(B, 64.0)
    nf = np.full(B, 16.0)
    fps = np.full(B, 24.0)
    if jitter:
        # half of the batches get other plausible values, so that the model learns to ignore them
        # (the C pipeline may pass the real pixel size / the clip's fps)
        if rng.random() < 0.5:
            sizes = [64, 128, 144, 240, 256, 360, 426, 480, 512, 640]
            h[:] = sizes[rng.integers(len(sizes))]
            w[:] = sizes[rng.integers(len(sizes))]
            nf[:] = [16, 16, 32, 51, 64][rng.integers(5)]
            fps[:] = [8, 12, 16, 24, 24, 30][rng.integers(6)]
    ar = h / w
    return [torch.from_numpy(a).float() for a in (h, w, nf, ar, fps)]


def frame_mask(rng, B, T, scale=1.0):
    """x_mask [B,T] bool (True = noisy frame): 70% none, else first/last k frames kept clean
    (scale < 1 makes the masked cases rarer: 30% * scale of the samples)."""
    m = np.ones((B, T), dtype=bool)
    for b in range(B):
        r = rng.random()
        if r < 1 - 0.3 * scale:
            continue
        r = 0.7 + (r - (1 - 0.3 * scale)) / scale
        if r < 0.82:
            m[b, :1] = False
        elif r < 0.92:
            m[b, :rng.integers(2, 9)] = False
        else:
            m[b, T - rng.integers(1, 9):] = False
    return torch.from_numpy(m)


def focus_weights(caps, focus):
    """Per-clip sampling weights: a fraction `focus` of the draws comes from the clips the prompt
    following is measured on (black background, moving left/right/up/down), the rest uniformly."""
    hit = np.array([(" moving " in c and c.endswith(" on a black background")) for c in caps])
    w = np.full(len(caps), (1 - focus) / len(caps))
    if focus > 0 and hit.any():
        w[hit] += focus / hit.sum()
    return w / w.sum()


def stage_dit(args):
    torch.manual_seed(args.seed + 2)  # model initialisation (as in the original from-scratch recipe)
    ck_path = os.path.join(args.work, "dit.pt")
    sfx = "-tight" if args.dit_tight else ""
    lat = torch.from_numpy(np.load(os.path.join(args.work, "latents%s.npy" % sfx)))
    obj = None
    if args.dit_fg_weight > 0:
        # object cells dilated by one cell (the VAE spreads a shape's edge into its neighbours)
        o = torch.from_numpy(np.load(os.path.join(args.work, "objects%s.npy" % sfx))).float() / 255
        obj = F.max_pool2d(o.reshape(-1, 1, *o.shape[2:]), 3, 1, 1).reshape(o.shape)[:, None]
    with open(os.path.join(args.work, "captions%s.json" % sfx)) as f:
        caps = json.load(f)
    tok = Tokenizer(os.path.join(args.work, "spiece.model"), MAX_LEN)
    ids, masks = tok(caps)
    lmax = int(masks.sum(1).max())
    ids, masks = ids[:, :lmax], masks[:, :lmax]  # T5 real-token outputs do not depend on padding
    # black is the default background: the same clips also under the caption without
    # " on a black background" (drawn with probability --dit-short-captions per sample)
    short = [c.replace(" on a black background", "") for c in caps]
    has_short = torch.tensor([a != b for a, b in zip(caps, short)])
    sids, smasks = tok(short)
    sids, smasks = sids[:, :lmax], smasks[:, :lmax]
    t5 = T5Encoder(t5_config(args))
    dit = STDiT2(DIT_CFG)
    log("dit params %.2fM, t5 params %.2fM, caption tokens <= %d" % (
        sum(p.numel() for p in dit.parameters()) / 1e6, sum(p.numel() for p in t5.parameters()) / 1e6, lmax))
    params = list(dit.parameters()) + list(t5.parameters())
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.dit_lr, weight_decay=0.0, betas=(0.9, 0.99))
    ema_dit, ema_t5 = copy.deepcopy(dit), copy.deepcopy(t5)
    step0, has_opt = 0, False
    if args.resume and os.path.exists(ck_path):
        ck = torch.load(ck_path)
        step0 = int(ck["step"])
        ema_dit.load_state_dict(ck["dit"])
        ema_t5.load_state_dict(ck["t5"])
        # older checkpoints hold only the EMA weights: continue from those with a fresh optimizer
        dit.load_state_dict(ck.get("raw_dit", ck["dit"]))
        t5.load_state_dict(ck.get("raw_t5", ck["t5"]))
        if "opt" in ck:
            opt.load_state_dict(ck["opt"])
            has_opt = True
        log("dit: resumed from %s at step %d (%s)" % (ck_path, step0, "with optimizer state" if "opt" in ck
                                                          else "EMA weights only, fresh AdamW"))
    for p in list(ema_dit.parameters()) + list(ema_t5.parameters()):
        p.requires_grad_(False)
    # a resumed run draws other batches than the run it continues
    if step0 > 0:
        torch.manual_seed(args.seed + 2 + step0)
    rng = np.random.default_rng(args.seed + 2 + step0)
    weights = focus_weights(caps, args.dit_focus) if args.dit_focus > 0 else None
    dif = Diffusion(1000)
    tw = None
    if args.dit_snr_weight > 0:
        # eps-MSE weighted by 1/SNR(t) = (1 - abar)/abar, clipped to [1, max] and normalised to mean 1
        # over t: the error of the implied x0 is the eps error / SNR, so plain eps-MSE hardly trains
        # the noisy steps (t > 500) that decide where the shape is and how it moves
        inv = (1 - dif.ac) / dif.ac
        w = np.clip(inv, 1.0, args.dit_snr_weight)
        tw = torch.from_numpy(w / w.mean()).float()
    n = lat.shape[0]
    B = args.dit_batch
    warm = 1 if has_opt else args.dit_warmup  # a restored optimizer needs no new warm-up
    t_start = time.time()
    t_end = t_start + args.dit_minutes * 60
    t_ckpt = t_start
    todo = max(0, args.dit_max_steps - step0)

    def save(step):
        torch.save({"dit": ema_dit.state_dict(), "t5": ema_t5.state_dict(), "step": step,
                    "raw_dit": dit.state_dict(), "raw_t5": t5.state_dict(), "opt": opt.state_dict()},
                   ck_path + ".tmp")
        os.replace(ck_path + ".tmp", ck_path)

    k, run = 0, None
    while time.time() < t_end and k < todo:
        idx = torch.from_numpy(rng.choice(n, B, replace=False, p=weights))
        x0 = lat[idx]
        ym, yid = masks[idx], ids[idx]
        if args.dit_short_captions > 0:
            use = has_short[idx] & torch.from_numpy(rng.random(B) < args.dit_short_captions)
            ym = torch.where(use[:, None], smasks[idx], ym)
            yid = torch.where(use[:, None], sids[idx], yid)
        y = t5(yid, ym)
        t = rng.integers(0, 1000, B)
        if args.dit_t_high > 0:  # extra weight on the noisier timesteps, where the caption matters most
            hi = rng.random(B) < args.dit_t_high
            t = np.where(hi, rng.integers(400, 1000, B), t)
        t = torch.from_numpy(t)
        noise = torch.randn_like(x0)
        xt = dif.q_sample(x0, t, noise)
        xm = frame_mask(rng, B, x0.shape[2], args.dit_mask_scale)
        use_mask = bool((~xm).any())
        if use_mask:
            xt = torch.where(xm[:, None, :, None, None], xt, x0)
        drop = torch.from_numpy(rng.random(B) < 0.1)
        h, w, nf, ar, fps = random_cond(rng, B, True)
        out = dit(xt, t.float(), y, ym, h, w, nf, ar, fps, x_mask=xm if use_mask else None, force_drop=drop)
        C = x0.shape[1]
        lw = xm[:, None, :, None, None].float().expand_as(x0)
        ew = lw if obj is None else lw * (1 + args.dit_fg_weight * obj[idx])
        if tw is not None:
            ew = ew * tw[t].reshape(-1, 1, 1, 1, 1)
        mse = (((out[:, :C] - noise) ** 2) * ew).sum() / ew.sum()
        frozen = torch.cat([out[:, :C].detach(), out[:, C:]], 1)
        vb = (dif.vb_term(frozen, x0, xt, t) * lw).sum() / lw.sum()
        loss = mse + vb
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        frac = max((time.time() - t_start) / (t_end - t_start), k / todo)
        lr = args.dit_lr * min(1.0, (k + 1) / warm) * (1 - (1 - args.dit_lr_end) * frac)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        k += 1
        step = step0 + k
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for m_e, m in ((ema_dit, dit), (ema_t5, t5)):
                for pe, p in zip(m_e.parameters(), m.parameters()):
                    pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if step % 25 == 0:
            log("dit step %d loss %.4f (mse %.4f vb %.4f) run %.4f lr %.2e" % (
                step, loss.item(), mse.item(), vb.item(), run, lr))
        if step % 100 == 0 or time.time() - t_ckpt > args.ckpt_minutes * 60:
            save(step)
            t_ckpt = time.time()
    save(step0 + k)
    log("dit: %d steps this run, %d in all (batch %d)" % (k, step0 + k, B))


# ------------------------------------------------------------------------------------------ export
def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def stage_export(args):
    out = args.out
    ck = torch.load(os.path.join(args.work, "dit.pt"))
    sf = json.load(open(os.path.join(args.work, "scaling_factor.json")))["scaling_factor"]
    # text encoder
    d = os.path.join(out, "text_encoder")
    os.makedirs(d, exist_ok=True)
    tcfg = t5_config(args)
    hf = {"architectures": ["T5EncoderModel"], "model_type": "t5", **tcfg,
          "num_decoder_layers": tcfg["num_layers"], "dense_act_fn": "gelu_new", "is_gated_act": True,
          "dropout_rate": 0.0, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0,
          "tie_word_embeddings": False, "torch_dtype": "float32"}
    write_json(os.path.join(d, "config.json"), hf)
    save_safetensors(os.path.join(d, "model.safetensors"), ck["t5"])
    shutil.copy(os.path.join(args.work, "spiece.model"), os.path.join(d, "spiece.model"))
    write_json(os.path.join(d, "tokenizer_config.json"),
               {"tokenizer_class": "T5Tokenizer", "model_max_length": MAX_LEN, "eos_token": "</s>",
                "pad_token": "<pad>", "unk_token": "<unk>", "extra_ids": 0, "legacy": True})
    # vae
    d = os.path.join(out, "vae")
    os.makedirs(d, exist_ok=True)
    vcfg = dict(VAE_CFG)
    vcfg["scaling_factor"] = sf
    write_json(os.path.join(d, "config.json"), {"_class_name": "AutoencoderKL", **vcfg})
    save_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"),
                     torch.load(os.path.join(args.work, "vae.pt")))
    # transformer
    d = os.path.join(out, "transformer")
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"),
               {"architectures": ["STDiT2"], "model_type": "stdit2", **DIT_CFG, "class_dropout_prob": 0.1,
                "drop_path": 0.0, "input_size": [16, 64 // VAE_DOWN, 64 // VAE_DOWN], "enable_flash_attn": False,
                "enable_layernorm_kernel": False, "torch_dtype": "float32"})
    sd = dict(ck["dit"])
    save_safetensors(os.path.join(d, "model.safetensors"), sd)
    log("export: wrote", out, "(dit trained %d steps)" % ck["step"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--work", default="/tmp/kinora-demo-work")
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "data", "models", "kinora-demo"))
    ap.add_argument("--stages", default="spm,data,vae,lat,dit,export")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("THREADS", "1")))
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--clips", type=int, default=3000)
    ap.add_argument("--vae-minutes", type=float, default=7.0)
    ap.add_argument("--vae-max-steps", type=int, default=10 ** 9)
    ap.add_argument("--vae-full-steps", type=int, default=1500, help="steps of the vaefull stage")
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-crop", type=int, default=32)
    ap.add_argument("--vae-kl", type=float, default=1e-5)
    ap.add_argument("--dit-minutes", type=float, default=42.0)
    ap.add_argument("--dit-max-steps", type=int, default=10 ** 9)
    ap.add_argument("--dit-batch", type=int, default=8)
    ap.add_argument("--dit-lr", type=float, default=1e-3)
    ap.add_argument("--dit-hidden", type=int, default=DIT_CFG["hidden_size"])
    ap.add_argument("--dit-depth", type=int, default=DIT_CFG["depth"])
    ap.add_argument("--dit-heads", type=int, default=DIT_CFG["num_heads"])
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--dit-warmup", type=int, default=100)
    ap.add_argument("--dit-lr-end", type=float, default=0.3, help="final lr as a fraction of --dit-lr")
    ap.add_argument("--dit-short-captions", type=float, default=0.0,
                    help="probability of captioning a black-background clip without its background")
    ap.add_argument("--dit-focus", type=float, default=0.0,
                    help="fraction of the clips drawn from black-background left/right/up/down clips")
    ap.add_argument("--resume", action="store_true",
                    help="continue the dit stage from WORK/dit.pt when it exists (--dit-max-steps counts "
                         "all steps, so a finished run is not trained further)")
    ap.add_argument("--dit-t-high", type=float, default=0.0,
                    help="fraction of the timesteps drawn from [400, 1000) instead of [0, 1000)")
    ap.add_argument("--dit-mask-scale", type=float, default=1.0,
                    help="scale the share of frame-conditioning samples (30%% at 1)")
    ap.add_argument("--dit-fg-weight", type=float, default=0.0,
                    help="extra weight of the eps loss on the latent cells the shape covers (0: none)")
    ap.add_argument("--dit-snr-weight", type=float, default=0.0,
                    help="weight the eps loss by 1/SNR(t) clipped to [1, this] (0: unweighted)")
    ap.add_argument("--tight-spread", type=float, default=0.15,
                    help="random variation of the tdata clips as a fraction of the full ranges")
    ap.add_argument("--dit-tight", action="store_true", help="train the DiT on the tdata/tlat clips")
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    args = ap.parse_args()
    DIT_CFG.update(hidden_size=args.dit_hidden, depth=args.dit_depth, num_heads=args.dit_heads)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    os.makedirs(args.work, exist_ok=True)
    for s in args.stages.split(","):
        t = time.time()
        globals()["stage_" + s](args)
        log("stage %s took %.1f s" % (s, time.time() - t))


if __name__ == "__main__":
    main()
