"""Builds tests/data/families/: random-weight models of each family diffinv loads, scaled down
(fewer channels) but with the block structure of the real checkpoints, and float64 PyTorch
references of their output and input gradient.

- imagenet_tiny.pt: guided-diffusion's ImageNet-256 topology, six levels with 32..64 channels (two res blocks, attention at three
  levels, 16 channels a head, learned sigma, scale-shift, resblock up/down) from the reference
  adm.py, written by torch.save (f16 tensors, to keep the repository small; the references use
  the same f16-rounded values).
- diffusers/cifar10_tiny: google/ddpm-cifar10-32's UNet2DModel blocks (Down, AttnDown, Down, Down /
  Up, Up, AttnUp, Up), saved by save_pretrained (safetensors, current attention names).
- diffusers/celebahq_tiny: google/ddpm-celebahq-256's blocks (six levels, attention in the fifth),
  saved as diffusion_pytorch_model.bin with early diffusers' attention names (query, key, value,
  proj_attn), as the published google/ddpm-* downloads are.
- diffusers/variant_tiny: the options the google configs leave at one value: several heads
  (attention_head_dim 8), flip_sin_to_cos, downsample_padding 1, learned range, a cosine
  schedule over 500 steps.

Each <name>_io.safetensors holds x, t, a cotangent, the float64 output and the input gradient
of sum(out * cotangent), stored as f32. Needs torch, diffusers, safetensors.

usage: python3 scripts/make_family_fixtures.py [path/to/adm.py dir]
"""
import json, os, sys
import torch
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ref = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../shared/tools/reference")
sys.path.insert(0, ref)
OUT = os.path.join(HERE, "../tests/data/families")
os.makedirs(os.path.join(OUT, "diffusers"), exist_ok=True)


def randomise_(m, seed):
    """Every parameter random (the zero-initialised ones too), rounded to f16."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.dim() == 1:
                v = (1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g)
            else:
                fan = p[0].numel() if p.dim() > 1 else p.numel()
                v = torch.randn(p.shape, generator=g) / max(1, fan) ** 0.5
            p.copy_(v.half().float())


def io(name, forward, shape, t, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    x64 = x.double().requires_grad_(True)
    out = forward(x64, t)
    cot = torch.randn(out.shape, generator=g)
    (gx,) = torch.autograd.grad(out, x64, grad_outputs=cot.double())
    save_file({"x": x, "t": t, "cotangent": cot, "out": out.detach().float().contiguous(), "grad_x": gx.float().contiguous()},
              os.path.join(OUT, f"{name}_io.safetensors"),
              metadata={"about": f"float64 PyTorch forward and input gradient of {name} (scripts/make_family_fixtures.py)"})
    return x.double(), out.detach()


def learned_range_steps(x, out, t, seed):
    """guided-diffusion's p_sample with the learned-range variance (clip_denoised) on the full
    1000-step linear chain and on a respaced one, per image at its own t, in float64."""
    full = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar_full = torch.cumprod(1 - full, 0)
    sub = [0, 5, 13, 200, 700, 850, 999]
    ab = abar_full[sub]
    sub_betas = 1 - ab / torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=g).double()
    res = {"noise": noise.float(), "sub_steps": torch.tensor(sub)}
    for tag, betas, index in [("full", full, lambda tv: tv), ("sub", sub_betas, lambda tv: sub.index(tv))]:
        abar = torch.cumprod(1 - betas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        post_var = betas * (1 - abar_prev) / (1 - abar)
        post_log_clipped = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
        coef1 = betas * abar_prev.sqrt() / (1 - abar)
        coef2 = (1 - abar_prev) * (1 - betas).sqrt() / (1 - abar)
        outs = []
        for i, tv in enumerate(t.tolist()):
            k = index(tv)
            eps, v = out[i, :3], out[i, 3:]
            frac = (v + 1) / 2
            logvar = frac * torch.log(betas[k]) + (1 - frac) * post_log_clipped[k]
            x0 = ((1 / abar[k]).sqrt() * x[i] - (1 / abar[k] - 1).sqrt() * eps).clamp(-1, 1)
            mean = coef1[k] * x0 + coef2[k] * x[i]
            outs.append(mean + (k != 0) * torch.exp(0.5 * logvar) * noise[i])
        res[f"x_prev_{tag}"] = torch.stack(outs).float().contiguous()
    return res


def imagenet_tiny():
    from adm import UNet, timestep_embedding
    cfg = dict(image_size=64, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=2,
               attention_resolutions=[8, 4, 2], channel_mult=[1, 1, 2, 2, 2, 2], num_head_channels=16, dropout=0.0)
    torch.manual_seed(0)
    m = UNet(**cfg).eval()
    randomise_(m, 22)
    sd = m.state_dict()
    torch.save({k: v.half() for k, v in sd.items()}, os.path.join(OUT, "imagenet_tiny.pt"))
    with open(os.path.join(OUT, "imagenet_tiny.json"), "w") as f:
        json.dump({k: v for k, v in cfg.items() if k != "dropout"}, f, indent=1)
    md = m.double()

    def fwd(x, t):
        emb = md.time_embed(timestep_embedding(t, cfg["model_channels"]).double())
        hs, h = [], x
        for b in md.input_blocks:
            h = b(h, emb)
            hs.append(h)
        h = md.middle_block(h, emb)
        for b in md.output_blocks:
            h = b(torch.cat([h, hs.pop()], 1), emb)
        return md.out(h)

    t = torch.tensor([13, 700])
    x, out = io("imagenet_tiny", fwd, (2, 3, 64, 64), t, 23)
    save_file(learned_range_steps(x, out, t, 24), os.path.join(OUT, "imagenet_tiny_psample.safetensors"),
              metadata={"about": "guided-diffusion p_sample (learned range) of imagenet_tiny_io's x and out, float64"})
    print("imagenet_tiny:", sum(p.numel() for p in m.parameters()), "parameters")


def diffusers_model(name, cfg, sched, seed, size, old_names=False, bin_file=False):
    from diffusers import UNet2DModel, DDPMScheduler
    torch.manual_seed(0)
    m = UNet2DModel(**cfg).eval()
    randomise_(m, seed)
    d = os.path.join(OUT, "diffusers", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    m.half().save_pretrained(d, safe_serialization=not bin_file)
    m.float()
    if old_names:
        path = os.path.join(d, "diffusion_pytorch_model.bin")
        sd = torch.load(path)
        ren = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
        out = {}
        for k, v in sd.items():
            for a, b in ren.items():
                k = k.replace(a, b)
            out[k] = v
        torch.save(out, path)
    DDPMScheduler(**sched).save_pretrained(d)
    md = m.double()
    io(f"{name}", lambda x, t: md(x, t).sample, (2, cfg["in_channels"], size, size), torch.tensor([13, 700]), seed + 1)
    print(name + ":", sum(p.numel() for p in m.parameters()), "parameters")


GOOGLE = dict(act_fn="silu", attention_head_dim=None, center_input_sample=False, downsample_padding=0,
              flip_sin_to_cos=False, freq_shift=1, in_channels=3, out_channels=3, layers_per_block=2,
              mid_block_scale_factor=1, norm_eps=1e-6, time_embedding_type="positional")
GOOGLE_SCHED = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                    variance_type="fixed_small", clip_sample=True)

if __name__ == "__main__":
    imagenet_tiny()
    diffusers_model("cifar10_tiny", dict(GOOGLE, sample_size=32, block_out_channels=[32, 64, 64, 64], norm_num_groups=16,
                                         down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                                         up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
                    GOOGLE_SCHED, 31, 32)
    diffusers_model("celebahq_tiny", dict(GOOGLE, sample_size=64, block_out_channels=[16, 16, 32, 32, 64, 64],
                                          norm_num_groups=8,
                                          down_block_types=["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
                                          up_block_types=["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4),
                    GOOGLE_SCHED, 41, 64, old_names=True, bin_file=True)
    diffusers_model("variant_tiny", dict(sample_size=16, in_channels=3, out_channels=6, block_out_channels=[32, 64],
                                         layers_per_block=1, attention_head_dim=8, norm_num_groups=8,
                                         flip_sin_to_cos=True, freq_shift=0,
                                         downsample_padding=1, down_block_types=["AttnDownBlock2D", "DownBlock2D"],
                                         up_block_types=["UpBlock2D", "AttnUpBlock2D"]),
                    dict(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2", variance_type="learned_range"),
                    51, 16)
    print("wrote", OUT)
