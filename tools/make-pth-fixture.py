#!/usr/bin/python3
"""Writes the small PyTorch zip checkpoints used by tests/test-pth.c.

Needs torch (Debian: apt-get install python3-torch; run with /usr/bin/python3).  The tests do not
need torch: the expected names, dtypes, shapes and values go to tests/data/pth/expected.json.

    /usr/bin/python3 tools/make-pth-fixture.py [OUTDIR]     (default: tests/data/pth)

Fixtures (all written by torch.save with its default zip serialization, which on torch >= 1.13
always ends with a ZIP64 end-of-central-directory record):
  flat-f32.pth     flat OrderedDict of f32 tensors: 0-d, 1-d, 2-d, 4-d, empty
  dtypes.pth       f16, bf16, f64, i64 (values beyond 2^32), i32, i16, i8, u8, bool; a tensor shared
                   under two names; a contiguous view at a storage offset; an nn.Parameter
  nested.pth       Lightning-like {"epoch", "state_dict", "ema", "optimizer", "hparams"}: the
                   reader must pick "state_dict" and skip the rest
  model-key.pth    {"model": {...}, "ema": {...}, "step": 7}: the reader picks "model"
  proto4.pth       pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL)
  noncontig.pth    a transposed tensor: must be refused, naming the key
  complex.pth      a complex64 tensor (ComplexFloatStorage): must be refused
"""
import collections
import json
import os
import sys

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "pth")

DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def describe(sd):
    out = []
    for name, t in sd.items():
        t = t.detach()
        if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            values = [float(x) for x in t.double().flatten().tolist()]
        else:
            values = [int(x) for x in t.long().flatten().tolist()]
        out.append({"name": name, "dtype": DTYPES[t.dtype], "shape": list(t.shape),
                    "values": values})
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    # Values rounded to a few decimals keep expected.json short; they are still f32 numbers.
    def rnd(*shape, dtype=torch.float32):
        return (torch.randn(*shape) * 100).round().div(64).to(dtype)

    flat = collections.OrderedDict()
    flat["blocks.0.attn.qkv.weight"] = rnd(6, 4)
    flat["blocks.0.attn.qkv.bias"] = rnd(6)
    flat["scale"] = torch.tensor(1.5)
    flat["empty"] = torch.zeros(0, 3)
    flat["pos_embed"] = rnd(1, 2, 3, 2)
    torch.save(flat, os.path.join(OUT, "flat-f32.pth"))
    expected["flat-f32.pth"] = describe(flat)

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    half = rnd(2, 3, dtype=torch.float16)
    dt = collections.OrderedDict()
    dt["half"] = half
    dt["half_tied"] = half                    # same storage, saved once
    dt["bf16"] = rnd(3, 2, dtype=torch.bfloat16)
    dt["f64"] = torch.tensor([1.0 / 3.0, -2.5e-300, 1e300], dtype=torch.float64)
    dt["i64"] = torch.tensor([0, -5, 2 ** 40 + 3, -(2 ** 62)], dtype=torch.int64)
    dt["i32"] = torch.tensor([[7, -8], [2 ** 31 - 1, -(2 ** 31)]], dtype=torch.int32)
    dt["i16"] = torch.tensor([-32768, 32767], dtype=torch.int16)
    dt["i8"] = torch.tensor([-128, 127, 3], dtype=torch.int8)
    dt["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    dt["bool"] = torch.tensor([True, False, True])
    dt["base"] = base
    dt["row1"] = base[1]                      # view: storage offset 4
    dt["param"] = torch.nn.Parameter(rnd(2))  # _rebuild_parameter
    torch.save(dt, os.path.join(OUT, "dtypes.pth"))
    expected["dtypes.pth"] = describe(dt)

    inner = collections.OrderedDict()
    inner["net.0.weight"] = rnd(2, 2)
    inner["net.0.bias"] = rnd(2)
    lin = torch.nn.Linear(2, 1)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-3)
    lin(torch.ones(1, 2)).sum().backward()
    opt.step()
    nested = {
        "epoch": 3,
        "global_step": 2 ** 40,
        "ema": {"net.0.weight": rnd(2, 2)},
        "state_dict": inner,
        "optimizer": opt.state_dict(),
        "hparams": {"lr": 1e-4, "name": "stdit", "betas": (0.9, 0.99), "layers": [1, 2, 3],
                    "flag": None, "on": True},
    }
    torch.save(nested, os.path.join(OUT, "nested.pth"))
    expected["nested.pth"] = describe(inner)

    model = collections.OrderedDict()
    model["x_embedder.proj.weight"] = rnd(4, 1, 2, 2)
    mk = {"ema": {"other": rnd(1)}, "model": model, "step": 7}
    torch.save(mk, os.path.join(OUT, "model-key.pth"))
    expected["model-key.pth"] = describe(model)

    p4 = collections.OrderedDict()
    p4["a"] = rnd(3)
    p4["b"] = rnd(2, 2, dtype=torch.bfloat16)
    torch.save(p4, os.path.join(OUT, "proto4.pth"), pickle_protocol=4)
    expected["proto4.pth"] = describe(p4)

    torch.save({"ok": rnd(2), "transposed": rnd(3, 2).t()}, os.path.join(OUT, "noncontig.pth"))
    torch.save({"z": torch.zeros(2, dtype=torch.complex64)}, os.path.join(OUT, "complex.pth"))

    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
