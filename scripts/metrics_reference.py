import json, numpy as np
from PIL import Image  # run from the repo root with numpy, pillow, scikit-image
from skimage.metrics import structural_similarity, peak_signal_noise_ratio
def load(p): return np.asarray(Image.open(p).convert('RGB')).astype(np.float64)/255.0
pairs = [("images/lpips/ex_ref.png","images/lpips/ex_p0.png"),("images/lpips/ex_ref.png","images/lpips/ex_p1.png"),
         ("celeba64/009501.png","celeba64/009502.png"),("celeba64/009503.png","celeba64/009504.png"),
         ("images/ffhq256/00000.png","images/ffhq256/00001.png"),("celeba64/009505.png","images/009505_blur.png")]
out = []
for a,b in pairs:
    A, B = load('tests/data/'+a), load('tests/data/'+b)
    s = structural_similarity(A, B, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=2)
    p = peak_signal_noise_ratio(A, B, data_range=1)
    out.append(dict(a=a, b=b, ssim=float(s), psnr=float(p)))
import skimage, scipy
json.dump(dict(about="scikit-image %s structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=2) and peak_signal_noise_ratio(data_range=1) on u8/255 float64 images; made by the command in tests/data/README.md" % skimage.__version__, pairs=out), open('tests/data/metrics_reference.json','w'), indent=1)
print(json.dumps(out, indent=1))
