"""One PyTorch (or ONNX Runtime) timing of the FFHQ-256 DPS UNet (or, with --preset imagenet256,
guided-diffusion's ImageNet-256 UNet) on the CPU, random weights, one mode per process so that
the peak RSS is that mode's. Prints one JSON line.

usage: python3 bench_torch.py MODE [--threads N] [--reps N] [--warmup N] [--size S] [--batch B] [--preset P]
MODE: fwd | fwdbwd | fwd_bf16 | fwdbwd_bf16 | ort_fwd
"""
import argparse, json, os, resource, statistics, sys, time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adm import UNet  # noqa: E402

FFHQ = dict(image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=1,
            attention_resolutions=[16], channel_mult=[1, 1, 2, 2, 4, 4], num_head_channels=64, dropout=0.0)
IMAGENET = dict(FFHQ, model_channels=256, num_res_blocks=2, attention_resolutions=[32, 16, 8])
PRESETS = {"ffhq256": FFHQ, "imagenet256": IMAGENET}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--preset", default="ffhq256", choices=sorted(PRESETS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = UNet(**PRESETS[a.preset]).eval().requires_grad_(False)
    x = torch.randn(a.batch, 3, a.size, a.size)
    t = torch.full((a.batch,), 500)
    bf16 = a.mode.endswith("bf16")
    if a.mode == "ort_fwd":
        import onnxruntime as ort
        path = f"/tmp/diffinv_ffhq_{a.size}.onnx"
        if not os.path.exists(path):
            torch.onnx.export(m, (x, t), path, opset_version=17, dynamo=False)
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feeds = {sess.get_inputs()[0].name: x.numpy(), sess.get_inputs()[1].name: t.numpy()}
        step = lambda: sess.run(None, feeds)
    else:
        def step():
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.no_grad()
            if not a.mode.startswith("fwdbwd"):
                with torch.no_grad(), (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.no_grad()):
                    return m(x, t)
            xr = x.clone().requires_grad_(True)
            with (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.enable_grad()):
                out = m(xr, t)
            return torch.autograd.grad(out.float().square().sum(), xr)[0]
    for _ in range(a.warmup):
        step()
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    print(json.dumps(dict(mode=a.mode, torch=torch.__version__, threads=a.threads, ms=statistics.median(ts) * 1e3,
                          min_ms=min(ts) * 1e3, peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


if __name__ == "__main__":
    main()
