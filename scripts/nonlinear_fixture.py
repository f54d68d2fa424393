#!/usr/bin/env python3
"""Writes tests/data/nonlinear_ops.json: phase retrieval and HDR on a fixed pattern, computed with
NumPy exactly as DAPS's code defines them (daps.md §7, §8), for cpu/tests/nonlinear_ops.rs.

x[c, i, j] = 0.9 sin(0.7 i + 1.3 j + 2 c), rounded to float32; v[c, i, j] = cos(0.3 i - 0.5 j + c)
(a cotangent on the measurement grid). Run: python3 scripts/nonlinear_fixture.py
"""
import json
import os
import numpy as np

C, H, W, OS, ALPHA = 3, 8, 12, 2.0, 2.0


def pattern(f, c, h, w):
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([f(i, j, k) for k in range(c)]).astype(np.float32).astype(np.float64)


x = pattern(lambda i, j, k: 0.9 * np.sin(0.7 * i + 1.3 * j + 2 * k), C, H, W)
ph, pw = int(OS / 8 * H), int(OS / 8 * W)
u = np.pad(0.5 * x + 0.5, ((0, 0), (ph, ph), (pw, pw)))
fc = lambda a: np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
fch = lambda a: np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
z = fc(u)
pr = np.abs(z)
hh, ww = H + 2 * ph, W + 2 * pw
v = pattern(lambda i, j, k: np.cos(0.3 * i - 0.5 * j + k), C, hh, ww)
phi = np.where(np.abs(z) > 0, z / np.maximum(np.abs(z), 1e-300), 0)
pr_vjp = 0.5 * np.real(fch(v * phi))[:, ph:ph + H, pw:pw + W]
hdr = np.clip(ALPHA * x, -1, 1)
out = {
    "shape": [1, C, H, W],
    "oversample": OS,
    "alpha": ALPHA,
    "pr_shape": [1, C, hh, ww],
    "pr": pr.ravel().tolist(),
    "pr_vjp": pr_vjp.ravel().tolist(),
    "hdr": hdr.ravel().tolist(),
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "nonlinear_ops.json")
with open(path, "w") as f:
    json.dump(out, f)
print("wrote", path)
