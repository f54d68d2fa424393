"""Time the FFHQ-256 DPS UNet configuration (random weights) in PyTorch: forward, and forward +
backward to the input (one DPS step), fp32 and bf16 autocast. Prints one JSON line per mode.

usage: python3 bench_unet.py [--device cuda|cpu] [--reps N] [--threads N] [--no-tf32]

Copied from the workplace's reference tools (../shared/tools/reference/bench_unet.py); added:
--no-tf32 (PyTorch lets cuDNN use TF32 for f32 convolutions by default) and the TF32 flags in
the output.
"""
import argparse, contextlib, json, os, statistics, sys, time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adm import UNet  # noqa: E402

FFHQ = dict(image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=1,
            attention_resolutions=[16], channel_mult=[1, 1, 2, 2, 4, 4], num_head_channels=64, dropout=0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-tf32", action="store_true")
    ap.add_argument("--modes", default="fwd,fwdbwd,fwd_bf16,fwdbwd_bf16")
    a = ap.parse_args()
    if a.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    torch.manual_seed(0)
    m = UNet(**FFHQ).to(dev).eval().requires_grad_(False)
    x = torch.randn(1, 3, 256, 256, device=dev)
    t = torch.tensor([500], device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for mode in a.modes.split(","):
        ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if mode.endswith("bf16") else contextlib.nullcontext

        def step():
            if not mode.startswith("fwdbwd"):
                with torch.no_grad(), ctx():
                    return m(x, t)
            xr = x.detach().clone().requires_grad_(True)
            with ctx():
                loss = m(xr, t)[:, :3].float().square().sum()
            return torch.autograd.grad(loss, xr)[0]

        for _ in range(3):
            step()
        sync()
        ts = []
        for _ in range(a.reps):
            t0 = time.perf_counter(); step(); sync(); ts.append(time.perf_counter() - t0)
        print(json.dumps(dict(mode=mode, device=torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                              torch=torch.__version__, cudnn_tf32=torch.backends.cudnn.allow_tf32,
                              matmul_tf32=torch.backends.cuda.matmul.allow_tf32, median_ms=round(statistics.median(ts) * 1e3, 2),
                              min_ms=round(min(ts) * 1e3, 2))), flush=True)


if __name__ == "__main__":
    main()
