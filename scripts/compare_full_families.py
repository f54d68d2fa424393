"""The full-size models of each family, with random weights, against PyTorch: guided-diffusion's
ImageNet-256 UNet (552.8 M parameters, written by torch.save as a bare state_dict, so diffinv
must recognise it by its tensor shapes), and diffusers' google/ddpm-cifar10-32 and
google/ddpm-celebahq-256 UNet2DModel configs (written by save_pretrained). For each: what
`diffinv model info` recognises, and the output and input gradient of `diffinv model run`
against PyTorch float32 (the full models are too slow for float64 here), with diffinv's peak RSS.
Too large for the repository; the tests use scaled-down copies (scripts/make_family_fixtures.py).

usage: python3 scripts/compare_full_families.py [WORKDIR] [THREADS]   (needs torch, diffusers)
"""
import json, os, resource, subprocess, sys, time
import torch
from safetensors.torch import save_file, load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))
WORK = sys.argv[1] if len(sys.argv) > 1 else "/tmp/diffinv-families"
THREADS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
BIN = os.path.join(HERE, "../target/release/diffinv")
os.makedirs(WORK, exist_ok=True)
torch.set_num_threads(THREADS)


def randomise_(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and p.dim() == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / max(1, fan) ** 0.5)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def compare(name, model_path, fwd, size, channels=3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, channels, size, size, generator=g)
    t = torch.tensor([500])
    xr = x.clone().requires_grad_(True)
    t0 = time.perf_counter()
    out = fwd(xr, t)
    cot = torch.randn(out.shape, generator=g)
    (gx,) = torch.autograd.grad(out, xr, grad_outputs=cot)
    torch_s = time.perf_counter() - t0
    io = os.path.join(WORK, f"{name}_in.safetensors")
    save_file({"x": x, "t": t, "cotangent": cot}, io)
    info = json.loads(subprocess.run([BIN, "--json", "model", "info", model_path], check=True,
                                     capture_output=True, text=True).stdout)
    res = os.path.join(WORK, f"{name}_out.safetensors")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", BIN, "-q", "--threads", str(THREADS), "model", "run",
                        "--model", model_path, "--input", io, "--output", res], check=True, capture_output=True, text=True)
    ours_s = time.perf_counter() - t0
    rss = int(p.stderr.strip().splitlines()[-1]) / 1024
    r = load_file(res)
    row = dict(model=name, family=info["family"], preset=info["preset"], config_source=info["config_source"],
               params=info["params"], gflop=round(info["gflop"], 1), schedule=info["schedule"],
               variance=info["variance"], out_rel_err=rel(r["eps"], out.detach()), grad_rel_err=rel(r["grad_x"], gx),
               torch_fwd_grad_s=round(torch_s, 2), diffinv_model_run_s=round(ours_s, 2), diffinv_peak_rss_mib=round(rss))
    print(json.dumps(row), flush=True)
    return row


def imagenet():
    from adm import UNet
    cfg = dict(image_size=256, in_channels=3, model_channels=256, out_channels=6, num_res_blocks=2,
               attention_resolutions=[32, 16, 8], channel_mult=[1, 1, 2, 2, 4, 4], num_head_channels=64, dropout=0.0)
    m = UNet(**cfg).eval()
    randomise_(m, 5)
    path = os.path.join(WORK, "256x256_diffusion_uncond.pt")
    if not os.path.exists(path):
        torch.save(m.state_dict(), path)
    return compare("imagenet256", path, lambda x, t: m(x, t), 256)


GOOGLE = dict(act_fn="silu", attention_head_dim=None, center_input_sample=False, downsample_padding=0,
              flip_sin_to_cos=False, freq_shift=1, in_channels=3, out_channels=3, layers_per_block=2,
              mid_block_scale_factor=1, norm_eps=1e-6, norm_num_groups=32, time_embedding_type="positional")


def ddpm(name, cfg, size):
    from diffusers import UNet2DModel, DDPMScheduler
    m = UNet2DModel(**cfg).eval()
    randomise_(m, 6)
    d = os.path.join(WORK, name)
    m.save_pretrained(d)
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  variance_type="fixed_small", clip_sample=True).save_pretrained(d)
    return compare(name, d, lambda x, t: m(x, t).sample, size)


if __name__ == "__main__":
    rows = [
        ddpm("ddpm-cifar10-32", dict(GOOGLE, sample_size=32, block_out_channels=[128, 256, 256, 256],
                                     down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                                     up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]), 32),
        ddpm("ddpm-celebahq-256", dict(GOOGLE, sample_size=256, block_out_channels=[128, 128, 256, 256, 512, 512],
                                       down_block_types=["DownBlock2D"] * 4 + ["AttnDownBlock2D", "DownBlock2D"],
                                       up_block_types=["UpBlock2D", "AttnUpBlock2D"] + ["UpBlock2D"] * 4), 256),
        imagenet(),
    ]
    print("| model | family | recognised as | parameters | GFLOP | output rel. err | grad rel. err | diffinv peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['family']} | {r['preset'] or '-'} ({r['config_source']}) | {r['params'] / 1e6:.1f} M | "
              f"{r['gflop']} | {r['out_rel_err']:.1e} | {r['grad_rel_err']:.1e} | {r['diffinv_peak_rss_mib']} MiB |")
