"""Builds tests/data/pt/: a small random ADM UNet (the adm.py / guided-diffusion layout) saved
by torch.save in the zip format (f32 and f16), in the legacy format, and as safetensors, with
a float64 reference forward. Needs torch, numpy, safetensors and ../shared/tools/reference/adm.py.

usage: python3 scripts/make_pt_fixtures.py [path/to/adm.py dir]
"""
import json, os, sys
import torch
from safetensors.torch import save_file

ref = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../shared/tools/reference")
sys.path.insert(0, ref)
from adm import UNet  # noqa: E402

CFG = dict(image_size=16, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=1,
           attention_resolutions=[8], channel_mult=[1, 1], num_head_channels=16, dropout=0.0)
out = os.path.join(os.path.dirname(__file__), "../tests/data/pt")
os.makedirs(out, exist_ok=True)
torch.manual_seed(7)
m = UNet(**CFG).eval()
with torch.no_grad():
    for p in m.parameters():  # every parameter random, including the zero-initialised ones
        p.copy_(torch.randn_like(p) / max(1, p[0].numel()) ** 0.5)
sd = m.state_dict()
meta = {"config": json.dumps(CFG), "about": "random-weight tiny ADM UNet for the PyTorch-loader tests (scripts/make_pt_fixtures.py, seed 7)"}
save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "tiny.safetensors"), metadata=meta)
torch.save(sd, os.path.join(out, "tiny.pt"))
torch.save({k: v.half() for k, v in sd.items()}, os.path.join(out, "tiny_f16.pt"))
torch.save(sd, os.path.join(out, "tiny_legacy.pt"), _use_new_zipfile_serialization=False)
g = torch.Generator().manual_seed(8)
x = torch.randn(2, 3, 16, 16, generator=g)
t = torch.tensor([13, 700])
md = UNet(**CFG).double().eval()
md.load_state_dict({k: v.double() for k, v in sd.items()})
with torch.no_grad():
    # adm.py builds the sinusoid in f32 and feeds it to f64 layers; do the same by hand.
    from adm import timestep_embedding
    emb = md.time_embed(timestep_embedding(t, CFG["model_channels"]).double())
    hs, h = [], x.double()
    for b in md.input_blocks:
        h = b(h, emb); hs.append(h)
    h = md.middle_block(h, emb)
    for b in md.output_blocks:
        h = b(torch.cat([h, hs.pop()], 1), emb)
    y = md.out(h)
save_file({"x": x, "t": t, "out": y.float()}, os.path.join(out, "tiny_io.safetensors"),
          metadata={"about": "float64 forward of tiny.safetensors on x (seeded randn) at t; stored f32"})
print("wrote", sorted(os.listdir(out)))
