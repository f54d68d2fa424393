// The CUDA C kernels of diffinv's GPU backend, compiled at run time with NVRTC. Every kernel
// loops grid-stride over its elements (`ll` indices: activations of batched 256 px models pass
// 2^31 floats in im2col buffers); reductions run in one block per row/group with a fixed tree,
// so results do not depend on the launch.
typedef long long ll;
typedef unsigned int u32;
#define GRID_LOOP(i, total) for (ll i = blockIdx.x * (ll)blockDim.x + threadIdx.x; i < (total); i += (ll)gridDim.x * blockDim.x)
// The per-plane loops: 32-bit indices (the host checks sizes), image and channel from the grid's
// y and z, so no 64-bit division per element (it costs ~100 instructions on the GPU).
#define PLANE_LOOP(p, len) for (u32 p = blockIdx.x * blockDim.x + threadIdx.x; p < (u32)(len); p += gridDim.x * blockDim.x)

__device__ __forceinline__ float silu_f(float u) { return u / (1.0f + expf(-u)); }
__device__ __forceinline__ float silu_grad(float u) {
    float s = 1.0f / (1.0f + expf(-u));
    return s * (1.0f + u * (1.0f - s));
}

// Tree sum over the block (blockDim.x a power of two, <= 1024); every thread gets the result.
__device__ double block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// col[(ch*k + ky)*k + kx][oy*ow + ox] = x[ch][oy*s - p + ky][ox*s - p + kx]; grid (pixels, rows
// of col, images).
extern "C" __global__ void im2col(const float* x, float* col, int c, int h, int w, int k, int stride, int pad,
                                  int oh, int ow) {
    int r = blockIdx.y;
    int kx = r % k, ky = (r / k) % k, ch = r / (k * k);
    u32 l = (u32)oh * ow;
    const float* xc = x + ((size_t)blockIdx.z * c + ch) * h * w;
    float* cr = col + ((size_t)blockIdx.z * c * k * k + r) * l;
    PLANE_LOOP(p, l) {
        int oy = p / ow, ox = p - oy * ow;
        int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
        cr[p] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xc[iy * w + ix] : 0.0f;
    }
}

// The adjoint of im2col, as a gather: every input pixel sums the columns that read it; grid
// (pixels, channels, images).
extern "C" __global__ void col2im(const float* col, float* x, int c, int h, int w, int k, int stride, int pad,
                                  int oh, int ow, int accumulate) {
    int ch = blockIdx.y;
    u32 l = (u32)oh * ow;
    const float* cc = col + ((size_t)blockIdx.z * c + ch) * k * k * l;
    float* xc = x + ((size_t)blockIdx.z * c + ch) * h * w;
    PLANE_LOOP(p, (u32)h * w) {
        int iy = p / w, ix = p - iy * w;
        float s = 0.0f;
        for (int ky = 0; ky < k; ky++) {
            int oy = iy + pad - ky;
            if (oy < 0) continue;
            if (stride > 1) {
                if (oy % stride) continue;
                oy /= stride;
            }
            if (oy >= oh) continue;
            for (int kx = 0; kx < k; kx++) {
                int ox = ix + pad - kx;
                if (ox < 0) continue;
                if (stride > 1) {
                    if (ox % stride) continue;
                    ox /= stride;
                }
                if (ox >= ow) continue;
                s += cc[(u32)(ky * k + kx) * l + (u32)oy * ow + ox];
            }
        }
        xc[p] = accumulate ? xc[p] + s : s;
    }
}

// out[i][ch][p] = bias[ch] + (res ? res[i][ch][p] : 0) + (accumulate ? out : 0); grid (pixels,
// channels, images).
extern "C" __global__ void bias_init(float* out, const float* bias, const float* res, int c, int hw, int accumulate) {
    size_t base = ((size_t)blockIdx.z * c + blockIdx.y) * hw;
    float bv = bias ? bias[blockIdx.y] : 0.0f;
    PLANE_LOOP(p, hw) {
        float v = bv;
        if (res) v += res[base + p];
        if (accumulate) v += out[base + p];
        out[base + p] = v;
    }
}

// Partial sums (sum, sum of squares) of chunk blockIdx.x of group blockIdx.y (`gl` contiguous
// floats per group, chunks of `cl`), in f64: part[(group * chunks + chunk) * 2 + {0, 1}]. The
// groups of a 256 px layer hold up to 512K floats; one block per group would use 32 SMs.
extern "C" __global__ void gn_partial(const float* x, double* part, ll gl, ll cl) {
    __shared__ double sh[1024];
    ll g = blockIdx.y, k = blockIdx.x;
    const float* xg = x + g * gl;
    ll end = min(gl, (k + 1) * cl);
    double s = 0.0, q = 0.0;
    for (ll j = k * cl + threadIdx.x; j < end; j += blockDim.x) {
        double v = xg[j];
        s += v;
        q += v * v;
    }
    s = block_sum(s, sh);
    q = block_sum(q, sh);
    if (threadIdx.x == 0) {
        part[(g * gridDim.x + k) * 2] = s;
        part[(g * gridDim.x + k) * 2 + 1] = q;
    }
}

// Mean and 1/sqrt(var + eps) of each group from its partial sums (in chunk order).
extern "C" __global__ void gn_finalize(const double* part, float* stats, int chunks, ll gl, double eps, int groups) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= groups) return;
    double s = 0.0, q = 0.0;
    for (int k = 0; k < chunks; k++) {
        s += part[((ll)g * chunks + k) * 2];
        q += part[((ll)g * chunks + k) * 2 + 1];
    }
    double m = s / gl;
    double var = q / gl - m * m;
    if (var < 0.0) var = 0.0;
    stats[2 * g] = (float)m;
    stats[2 * g + 1] = (float)(1.0 / sqrt(var + eps));
}

// The per-(image, channel) affine of the modulated norm: y = a x + b.
__device__ __forceinline__ void gn_affine(const float* stats, const float* gamma, const float* beta, const float* ss,
                                          ll sss, int img, int ch, int c, int groups, float* a, float* b, float* k) {
    int g = img * groups + ch / (c / groups);
    double m = stats[2 * g], r = stats[2 * g + 1];
    double gm = gamma[ch], bt = beta[ch];
    double s = 1.0, sh = 0.0;
    if (ss) {
        s = 1.0 + (double)ss[(ll)img * sss + ch];
        sh = ss[(ll)img * sss + c + ch];
    }
    *a = (float)(gm * r * s);
    *b = (float)((bt - m * r * gm) * s + sh);
    *k = (float)(gm * s);
}

// y = act(GN(x) (1 + scale) + shift); `ss` = (scale, shift) rows of 2c at a row stride of sss
// floats, or null; grid (pixels, channels, images).
extern "C" __global__ void gn_apply(const float* x, float* y, const float* stats, const float* gamma,
                                    const float* beta, const float* ss, ll sss, int c, int hw, int groups, int silu) {
    int ch = blockIdx.y, img = blockIdx.z;
    float a, b, k;
    gn_affine(stats, gamma, beta, ss, sss, img, ch, c, groups, &a, &b, &k);
    size_t base = ((size_t)img * c + ch) * hw;
    PLANE_LOOP(p, hw) {
        float u = a * x[base + p] + b;
        y[base + p] = silu ? silu_f(u) : u;
    }
}

// The backward pass's group sums of k du and k du xhat (k = gamma (1 + scale), du = gy through
// SiLU) over pixel chunk blockIdx.x (of `cl` pixels) of every channel of group blockIdx.y.
extern "C" __global__ void gn_bwd_partial(const float* x, const float* gy, const float* stats, const float* gamma,
                                          const float* beta, const float* ss, ll sss, int c, int hw, int groups,
                                          int silu, double* part, int cl) {
    __shared__ double sh[1024];
    int g = blockIdx.y;
    int img = g / groups, grp = g % groups;
    int cpg = c / groups;
    float mu = stats[2 * g], r = stats[2 * g + 1];
    int p0 = blockIdx.x * cl, p1 = min(hw, p0 + cl);
    double s1 = 0.0, s2 = 0.0;
    for (int cc = 0; cc < cpg; cc++) {
        int ch = grp * cpg + cc;
        float a, b, k;
        gn_affine(stats, gamma, beta, ss, sss, img, ch, c, groups, &a, &b, &k);
        size_t base = ((size_t)img * c + ch) * hw;
        float t1 = 0.0f, t2 = 0.0f;
        for (int p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
            float xv = x[base + p];
            float du = gy[base + p];
            if (silu) du *= silu_grad(a * xv + b);
            t1 += du;
            t2 += du * (xv - mu) * r;
        }
        s1 += (double)k * t1;
        s2 += (double)k * t2;
    }
    s1 = block_sum(s1, sh);
    s2 = block_sum(s2, sh);
    if (threadIdx.x == 0) {
        part[((ll)g * gridDim.x + blockIdx.x) * 2] = s1;
        part[((ll)g * gridDim.x + blockIdx.x) * 2 + 1] = s2;
    }
}

// The group means m1, m2 of the backward sums, in chunk order.
extern "C" __global__ void gn_bwd_finalize(const double* part, float* mm, int chunks, ll gl, int groups) {
    int g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= groups) return;
    double s1 = 0.0, s2 = 0.0;
    for (int k = 0; k < chunks; k++) {
        s1 += part[((ll)g * chunks + k) * 2];
        s2 += part[((ll)g * chunks + k) * 2 + 1];
    }
    mm[2 * g] = (float)(s1 / gl);
    mm[2 * g + 1] = (float)(s2 / gl);
}

// gx (+)= rstd (k du - m1 - xhat m2); grid (pixels, channels, images).
extern "C" __global__ void gn_bwd_apply(const float* x, const float* gy, float* gx, const float* stats,
                                        const float* gamma, const float* beta, const float* ss, ll sss,
                                        const float* mm, int c, int hw, int groups, int silu, int accumulate) {
    int ch = blockIdx.y, img = blockIdx.z;
    int g = img * groups + ch / (c / groups);
    float a, b, k;
    gn_affine(stats, gamma, beta, ss, sss, img, ch, c, groups, &a, &b, &k);
    float mu = stats[2 * g], r = stats[2 * g + 1], m1 = mm[2 * g], m2 = mm[2 * g + 1];
    size_t base = ((size_t)img * c + ch) * hw;
    PLANE_LOOP(p, hw) {
        float xv = x[base + p];
        float du = gy[base + p];
        if (silu) du *= silu_grad(a * xv + b);
        float v = r * (k * du - m1 - (xv - mu) * r * m2);
        gx[base + p] = accumulate ? gx[base + p] + v : v;
    }
}

// h[i][ch][p] += e[i * se + ch] (a ResBlock's embedding without scale-shift); grid (pixels,
// channels, images).
extern "C" __global__ void add_channel(float* h, const float* e, ll se, int c, int hw) {
    float v = e[(ll)blockIdx.z * se + blockIdx.y];
    size_t base = ((size_t)blockIdx.z * c + blockIdx.y) * hw;
    PLANE_LOOP(p, hw) { h[base + p] += v; }
}

// In place SiLU.
extern "C" __global__ void silu_inplace(float* x, ll total) {
    GRID_LOOP(i, total) { x[i] = silu_f(x[i]); }
}

// out[j] = bias[j % f] (row init of a linear layer's output).
extern "C" __global__ void bias_rows(float* out, const float* bias, ll rows, int f) {
    GRID_LOOP(i, rows * f) { out[i] = bias[i % f]; }
}

// Softmax of each row of `l` values of `scale * s`, in place; one block per row.
extern "C" __global__ void softmax_rows(float* s, int l, float scale) {
    __shared__ double sh[1024];
    __shared__ float mx[1024];
    float* row = s + (ll)blockIdx.x * l;
    float m = __int_as_float(0xff800000);
    for (int j = threadIdx.x; j < l; j += blockDim.x) m = fmaxf(m, row[j]);
    mx[threadIdx.x] = m;
    __syncthreads();
    for (int st = blockDim.x / 2; st > 0; st >>= 1) {
        if (threadIdx.x < st) mx[threadIdx.x] = fmaxf(mx[threadIdx.x], mx[threadIdx.x + st]);
        __syncthreads();
    }
    m = mx[0];
    double sum = 0.0;
    for (int j = threadIdx.x; j < l; j += blockDim.x) {
        float e = expf(scale * (row[j] - m));
        row[j] = e;
        sum += e;
    }
    sum = block_sum(sum, sh);
    float inv = (float)(1.0 / sum);
    for (int j = threadIdx.x; j < l; j += blockDim.x) row[j] *= inv;
}

// dw <- scale * w * (dw - sum_j w dw) row by row (the softmax adjoint, in place).
extern "C" __global__ void softmax_backward_rows(const float* w, float* dw, int l, float scale) {
    __shared__ double sh[1024];
    const float* wr = w + (ll)blockIdx.x * l;
    float* dr = dw + (ll)blockIdx.x * l;
    double d = 0.0;
    for (int j = threadIdx.x; j < l; j += blockDim.x) d += (double)wr[j] * dr[j];
    d = block_sum(d, sh);
    float df = (float)d;
    for (int j = threadIdx.x; j < l; j += blockDim.x) dr[j] = scale * wr[j] * (dr[j] - df);
}

// Nearest x2 upsampling of `planes` planes of h x w.
extern "C" __global__ void upsample2(const float* x, float* y, ll planes, int h, int w) {
    int oh = 2 * h, ow = 2 * w;
    PLANE_LOOP(i, planes * oh * ow) {
        int ox = i % ow;
        int oy = (i / ow) % oh;
        size_t p = i / ((u32)oh * ow);
        y[i] = x[(p * h + oy / 2) * w + ox / 2];
    }
}

// Its adjoint: each input pixel sums its 2x2 block.
extern "C" __global__ void upsample2_adjoint(const float* gy, float* gx, ll planes, int h, int w, int accumulate) {
    int ow = 2 * w;
    PLANE_LOOP(i, planes * h * w) {
        int ix = i % w;
        int iy = (i / w) % h;
        size_t p = i / ((u32)h * w);
        const float* g = gy + (p * 2 * h + 2 * iy) * ow + 2 * ix;
        float v = (g[0] + g[1]) + (g[ow] + g[ow + 1]);
        gx[i] = accumulate ? gx[i] + v : v;
    }
}

// 2x2 average pooling of planes of h x w (h, w even).
extern "C" __global__ void avgpool2(const float* x, float* y, ll planes, int h, int w) {
    int oh = h / 2, ow = w / 2;
    PLANE_LOOP(i, planes * oh * ow) {
        int ox = i % ow;
        int oy = (i / ow) % oh;
        size_t p = i / ((u32)oh * ow);
        const float* s = x + (p * h + 2 * oy) * w + 2 * ox;
        y[i] = 0.25f * ((s[0] + s[1]) + (s[w] + s[w + 1]));
    }
}

// Its adjoint: every input pixel gets a quarter of its block's gradient.
extern "C" __global__ void avgpool2_adjoint(const float* gy, float* gx, ll planes, int h, int w, int accumulate) {
    int oh = h / 2, ow = w / 2;
    PLANE_LOOP(i, planes * h * w) {
        int ix = i % w;
        int iy = (i / w) % h;
        size_t p = i / ((u32)h * w);
        float v = 0.25f * gy[(p * oh + iy / 2) * ow + ix / 2];
        gx[i] = accumulate ? gx[i] + v : v;
    }
}

// out[i] = cat(a[i], b[i]) for images of la and lb floats; grid (elements, images).
extern "C" __global__ void concat2(const float* a, const float* b, float* out, int la, int lb) {
    size_t img = blockIdx.y;
    PLANE_LOOP(j, la + lb) { out[img * (la + lb) + j] = j < (u32)la ? a[img * la + j] : b[img * lb + j - la]; }
}

// The adjoint of concat2: split `src` into a and b.
extern "C" __global__ void split2(const float* src, float* a, float* b, int la, int lb) {
    size_t img = blockIdx.y;
    PLANE_LOOP(j, la + lb) {
        float v = src[img * (la + lb) + j];
        if (j < (u32)la) a[img * la + j] = v;
        else b[img * lb + j - la] = v;
    }
}

// out = a x + b y + c z per element of images of `len` floats; each operand has its own image
// stride (a model output's eps is the first channels of a wider image); null operands are 0.
// `clip` clamps to [-1, 1]. Grid (elements, images).
extern "C" __global__ void lin3(float* out, ll so, const float* x, ll sx, float a, const float* y, ll sy, float b,
                                const float* z, ll sz, float c, int len, int clip) {
    ll img = blockIdx.y;
    PLANE_LOOP(j, len) {
        float v = 0.0f;
        if (x) v = a * x[img * sx + j];
        if (y) v += b * y[img * sy + j];
        if (z) v += c * z[img * sz + j];
        if (clip) v = fminf(fmaxf(v, -1.0f), 1.0f);
        out[img * so + j] = v;
    }
}

// The learned-range posterior sample: mean + exp(0.5 log_var(v)) z, v from the model output.
extern "C" __global__ void posterior_learned(float* out, const float* x0, const float* xt, const float* v, ll sv,
                                             const float* z, float c1, float c2, float max_log, float min_log,
                                             int len) {
    ll img = blockIdx.y;
    PLANE_LOOP(j, len) {
        ll i = img * len + j;
        float m = c1 * x0[i] + c2 * xt[i];
        if (z) {
            float frac = (v[img * sv + j] + 1.0f) * 0.5f;
            float lv = frac * max_log + (1.0f - frac) * min_log;
            m += expf(0.5f * lv) * z[i];
        }
        out[i] = m;
    }
}

// out = m y + (1 - m) x, the mask broadcast when its image stride is 0; grid (elements, images).
extern "C" __global__ void mask_blend(float* out, const float* x, const float* y, const float* m, ll sm, int len) {
    ll img = blockIdx.y;
    PLANE_LOOP(j, len) {
        ll i = img * len + j;
        float mv = m[img * sm + j];
        out[i] = mv * y[i] + (1.0f - mv) * x[i];
    }
}

// out = m x (the inpainting operator and its adjoint).
extern "C" __global__ void mask_mul(float* out, const float* x, const float* m, ll sm, int len) {
    ll img = blockIdx.y;
    PLANE_LOOP(j, len) { out[img * len + j] = m[img * sm + j] * x[img * len + j]; }
}

// out = (m y + rho z) / (m + rho) (the inpainting data solve).
extern "C" __global__ void mask_solve(float* out, const float* y, const float* z, const float* m, ll sm, double rho,
                                      int len) {
    ll img = blockIdx.y;
    PLANE_LOOP(j, len) {
        ll i = img * len + j;
        double mv = m[img * sm + j];
        out[i] = (float)((mv * y[i] + rho * z[i]) / (mv + rho));
    }
}

extern "C" __global__ void clamp_inplace(float* x, float lo, float hi, ll total) {
    GRID_LOOP(i, total) { x[i] = fminf(fmaxf(x[i], lo), hi); }
}

// Zero the gradient where |x0_raw| >= 1 (NaN counts as clipped, like the CPU's comparison).
extern "C" __global__ void clip_gradient(const float* x0, float* g, ll total) {
    GRID_LOOP(i, total) {
        if (!(fabsf(x0[i]) < 1.0f)) g[i] = 0.0f;
    }
}

// Sum of squares of each image (one block per image, fixed order), into out[blockIdx.x].
extern "C" __global__ void sumsq(const float* x, double* out, ll len) {
    __shared__ double sh[1024];
    const float* xi = x + (ll)blockIdx.x * len;
    double s = 0.0;
    for (ll j = threadIdx.x; j < len; j += blockDim.x) s += (double)xi[j] * xi[j];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// The largest |x| (NaN if any element is NaN), one block.
extern "C" __global__ void max_abs(const float* x, float* out, ll total) {
    __shared__ float sh[1024];
    float m = 0.0f;
    for (ll j = threadIdx.x; j < total; j += blockDim.x) {
        float v = fabsf(x[j]);
        m = (v != v || m != m) ? __int_as_float(0x7fffffff) : fmaxf(m, v);
    }
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            float a = sh[threadIdx.x], b = sh[threadIdx.x + s];
            sh[threadIdx.x] = (a != a || b != b) ? __int_as_float(0x7fffffff) : fmaxf(a, b);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = sh[0];
}

// x[i] *= s[image of i].
extern "C" __global__ void scale_images(float* x, const float* s, ll len, ll total) {
    GRID_LOOP(i, total) { x[i] *= s[i / len]; }
}
