#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Write the C-test fixtures tests/data/demo/{t5,step,vae}.safetensors from the demo pack.

Tensor names are documented in tests/data/demo/README.md. All float tensors are F32, ids/masks I64.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
from sample import Pack, DEFAULT_PACK  # noqa: E402
from util import save_safetensors  # noqa: E402

PROMPTS = ["a red circle moving right on a black background",
           "a blue square moving up on a gray background"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pack", default=DEFAULT_PACK)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "..", "tests", "data", "demo"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    os.makedirs(args.out, exist_ok=True)
    pack = Pack(args.pack)
    meta = {"format": "pt", "prompt0": PROMPTS[0], "prompt1": PROMPTS[1]}

    # --- T5
    ids, mask, y = pack.encode_text(PROMPTS)
    save_safetensors(os.path.join(args.out, "t5.safetensors"),
                     {"ids": ids, "mask": mask, "hidden": y}, meta)

    # --- one STDiT2 forward (plus a frame-conditioned one and a null-caption one)
    g = torch.Generator().manual_seed(1)
    down = pack.down
    T, H, W = 16, 64, 64
    x = torch.randn(2, 4, T, H // down, W // down, generator=g)
    t = torch.tensor([500.0, 500.0])
    tm = torch.tensor([900.0, 120.0])
    h, w, nf, ar, fps = pack.cond(2, H, W, T)
    x_mask = torch.ones(2, T, dtype=torch.bool)
    x_mask[0, :1] = False
    x_mask[1, :4] = False
    null = pack.dit.y_embedder.y_embedding[None, : pack.L].expand(2, -1, -1)
    with torch.no_grad():
        out = pack.dit(x, t, y, mask, h, w, nf, ar, fps)
        out_masked = pack.dit(x, tm, y, mask, h, w, nf, ar, fps, x_mask=x_mask)
        out_null = pack.dit(x, t, null, mask, h, w, nf, ar, fps)
    save_safetensors(os.path.join(args.out, "step.safetensors"), {
        "x": x, "timestep": t, "y": y[:, None], "mask": mask,
        "height": h, "width": w, "num_frames": nf, "ar": ar, "fps": fps,
        "out": out,
        "timestep_masked": tm, "x_mask": x_mask.to(torch.int64), "out_masked": out_masked,
        "out_null": out_null,
    }, meta)

    # --- VAE: decode two latents; encode two frames
    vids = [v for _, v in dataset.make_clips(2, 99)]
    img = torch.stack([torch.from_numpy(v[:, 0]) for v in vids])       # [2,3,64,64]
    with torch.no_grad():
        mean, logvar = pack.vae.encode(img)
        z = mean * pack.sf
        dec = pack.vae.decode(z / pack.sf)
    save_safetensors(os.path.join(args.out, "vae.safetensors"), {
        "latent": z, "decoded": dec, "image": img, "enc_mean": mean, "enc_logvar": logvar,
        "scaling_factor": torch.tensor([pack.sf]),
    }, meta)
    for f in ("t5", "step", "vae"):
        p = os.path.join(args.out, f + ".safetensors")
        print(p, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()
