// kernels.cu
// ~~~~~~~~~~
//
// gpunn's CUDA kernels: the fused versions of functions in kernels.py,
// for CuPy arrays.  kernels_cuda.py launches them, from Python functions
// of the same names, and says what each computes.
//
// The file is compiled whole, as one module, by CuPy (NVRTC) at first
// use, once per float type: REAL is float or double (-DREAL=..., see
// kernels_cuda.options).  Each thread computes its own outputs (no
// shared memory, no barriers), so the tests can also run this source on
// the CPU, thread by thread (tests/cuda_on_cpu.py).

// Activation codes: 0 linear, 1 sigmoid, 2 tanh, 3 ReLU (ACTIVATION_CODES).
__device__ REAL activate(REAL z, int kind) {
    if (kind == 1) return (REAL)0.5 * ((REAL)1 + tanh((REAL)0.5 * z));
    if (kind == 2) return tanh(z);
    if (kind == 3) return z > (REAL)0 ? z : (REAL)0;
    return z;
}

// sigma'(z), from a = sigma(z).
__device__ REAL activate_prime(REAL a, int kind) {
    if (kind == 1) return a * ((REAL)1 - a);
    if (kind == 2) return (REAL)1 - a * a;
    if (kind == 3) return a > (REAL)0 ? (REAL)1 : (REAL)0;
    return (REAL)1;
}

// The coordinates (n, y, x, c) of entry i of a channels-last array of
// shape (N, H, W, C).
struct Entry { int n, y, x, c; };
__device__ Entry entry_of(long long i, int H, int W, int C) {
    Entry e;
    e.c = (int)(i % C);
    i /= C;
    e.x = (int)(i % W);
    i /= W;
    e.y = (int)(i % H);
    e.n = (int)(i / H);
    return e;
}

// The coordinates (n, c, y, x) of entry i of an array of shape
// (N, C, H, W), as an Entry.
__device__ Entry entry_of_nchw(long long i, int C, int H, int W) {
    Entry e;
    e.x = (int)(i % W);
    i /= W;
    e.y = (int)(i % H);
    i /= H;
    e.c = (int)(i % C);
    e.n = (int)(i / C);
    return e;
}

// One thread per pooled output (n, f, p, q) of z, a and route, (N, F,
// PH, PW): the maximum of its (ph, pw) window of conv (N, OH, OW, F),
// channels-last, the first in row-major order on ties; z = max + b[f];
// a = sigma(z); route = the window entry.
extern "C" __global__ void pool_bias_activation(
        const REAL* conv, const REAL* b, REAL* z, REAL* a,
        unsigned char* route, int N, int OH, int OW, int F, int ph, int pw,
        int PH, int PW, int kind) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * PH * PW * F) return;
    Entry e = entry_of_nchw(i, F, PH, PW);
    int n = e.n, p = e.y, q = e.x, f = e.c;
    const REAL* window = conv + (((long long)n * OH + p * ph) * OW + q * pw) * F + f;
    REAL best = window[0];
    int entry = 0;
    for (int l = 0; l < ph; ++l) {
        for (int m = 0; m < pw; ++m) {
            REAL v = window[((long long)l * OW + m) * F];
            if (v > best) { best = v; entry = l * pw + m; }
        }
    }
    REAL zi = best + b[f];
    z[i] = zi;
    a[i] = activate(zi, kind);
    route[i] = (unsigned char)entry;
}

// One thread per convolution output (n, y, x, f) of nabla_conv (N, OH,
// OW, F), channels-last: the gradient nabla_a * sigma'(z) of its window
// if it is the window's route, else 0 (also on the border that pooling
// ignores).  a and route are (N, F, PH, PW); nabla_a is too if
// nabla_a_nchw (as a fully connected layer above gives it), else
// channels-last (as a conv layer's input gradient is): no copy either way.
extern "C" __global__ void pool_bias_activation_backward(
        const REAL* nabla_a, const REAL* a, const unsigned char* route,
        REAL* nabla_conv, int N, int OH, int OW, int F, int ph, int pw,
        int PH, int PW, int kind, int nabla_a_nchw) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * OH * OW * F) return;
    Entry e = entry_of(i, OH, OW, F);
    int n = e.n, y = e.y, x = e.x, f = e.c;
    int p = y / ph, q = x / pw;
    REAL g = (REAL)0;
    if (p < PH && q < PW) {
        long long j = (((long long)n * F + f) * PH + p) * PW + q;
        long long k = nabla_a_nchw ? j : (((long long)n * PH + p) * PW + q) * F + f;
        if (route[j] == (y - p * ph) * pw + (x - q * pw))
            g = nabla_a[k] * activate_prime(a[j], kind);
    }
    nabla_conv[i] = g;
}

// One thread per row of z (m, n): a = softmax(z), shifted by the row's
// maximum; costs[row] = ln(sum) - (z_y - max) = -ln a_y; delta = (a -
// y)/m.  With has_bias, z holds the product inpt w and gets b added first.
extern "C" __global__ void softmax_cost_delta(
        REAL* z, const REAL* b, const int* y, REAL* a, REAL* costs,
        REAL* delta, int m, int n, int has_bias) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= m) return;
    REAL* zr = z + (long long)row * n;
    if (has_bias)
        for (int j = 0; j < n; ++j) zr[j] += b[j];
    REAL top = zr[0];
    for (int j = 1; j < n; ++j) top = zr[j] > top ? zr[j] : top;
    REAL sum = (REAL)0;
    for (int j = 0; j < n; ++j) sum += exp(zr[j] - top);
    int label = y[row];
    costs[row] = log(sum) - (zr[label] - top);
    for (int j = 0; j < n; ++j) {
        REAL aj = exp(zr[j] - top) / sum;
        a[(long long)row * n + j] = aj;
        delta[(long long)row * n + j] = (aj - (j == label ? (REAL)1 : (REAL)0)) / m;
    }
}

// The softmax layer's sums over the mini-batch, after softmax_cost_delta:
// threads j < n, nabla_b[j] = the sum of delta's column j (BP3), if
// has_nabla_b; thread n, cost = the mean of costs (m,).
extern "C" __global__ void softmax_sums(
        const REAL* delta, const REAL* costs, REAL* nabla_b, REAL* cost,
        int m, int n, int has_nabla_b) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j > n || (j < n && !has_nabla_b)) return;
    REAL sum = (REAL)0;
    for (int i = 0; i < m; ++i)
        sum += j < n ? delta[(long long)i * n + j] : costs[i];
    if (j < n) nabla_b[j] = sum;
    else *cost = sum / m;
}

// One thread per parameter of a network, all its weights first, then
// all its biases: p -> p - eta nabla, and weights (i < n_weights)
// decayed by (1 - decay) first.
extern "C" __global__ void sgd_step(
        REAL* params, REAL* nablas, long long size, long long n_weights,
        REAL eta, REAL decay) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    REAL p = i < n_weights ? params[i] * ((REAL)1 - decay) : params[i];
    params[i] = p - eta * nablas[i];
}

// One thread per entry (i, j) of a fully connected layer's product
// z = inpt w (m, n): z += b[j], then a = sigma(z).
extern "C" __global__ void bias_activation(
        REAL* z, const REAL* b, REAL* a, int m, int n, int kind) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)m * n) return;
    REAL zi = z[i] + b[i % n];
    z[i] = zi;
    a[i] = activate(zi, kind);
}

// One thread per column j of a fully connected layer's (m, n) arrays:
// delta = nabla_a * sigma'(z) (BP2) and nabla_b[j] = the column's sum
// over the mini-batch (BP3).
extern "C" __global__ void delta_bias_gradient(
        const REAL* nabla_a, const REAL* a, REAL* delta, REAL* nabla_b,
        int m, int n, int kind) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    REAL sum = (REAL)0;
    for (int i = 0; i < m; ++i) {
        long long k = (long long)i * n + j;
        REAL d = nabla_a[k] * activate_prime(a[k], kind);
        delta[k] = d;
        sum += d;
    }
    nabla_b[j] = sum;
}

// The first word of Philox4x32-10 of the counter (c0, c1, c2, c3) under
// the key (k0, k1) (kernels.philox).
__device__ unsigned int philox_first_word(
        unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3,
        unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        unsigned long long p0 = (unsigned long long)c0 * 0xD2511F53u;
        unsigned long long p1 = (unsigned long long)c2 * 0xCD9E8D57u;
        unsigned int next0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0;
        unsigned int next2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
        c1 = (unsigned int)p1;
        c3 = (unsigned int)p0;
        c0 = next0;
        c2 = next2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

// A captured training step's state, on the device (cuda_graph.py):
// the dropout key, the number of the epoch's first mask, the masks drawn
// per step, and the number of the step.
enum { KEY0, KEY1, FIRST_DRAW, DRAWS_PER_STEP, STEP };

// One thread per entry i of inpt: kept (mask 1) unless the top 24 bits
// of Philox's word for the counter (i, draw low, draw high, 0) are below
// threshold (kernels.dropout); masked = inpt * mask.  With use_state,
// the key comes from state and draw is the mask's number within the
// step: state's first draw + step * draws per step + draw.
extern "C" __global__ void dropout(
        const REAL* inpt, REAL* masked, REAL* mask, long long size,
        unsigned int k0, unsigned int k1, unsigned long long draw,
        unsigned int threshold, const unsigned long long* state,
        int use_state) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) return;
    if (use_state) {
        k0 = (unsigned int)state[KEY0];
        k1 = (unsigned int)state[KEY1];
        draw += state[FIRST_DRAW] + state[STEP] * state[DRAWS_PER_STEP];
    }
    unsigned int word = philox_first_word(
        (unsigned int)i, (unsigned int)draw, (unsigned int)(draw >> 32), 0u,
        k0, k1);
    REAL keep = (word >> 8) >= threshold ? (REAL)1 : (REAL)0;
    mask[i] = keep;
    masked[i] = inpt[i] * keep;
}

// One thread per entry (i, j) of c = a b, a (M, K) and b (K, N) read
// through their strides in entries (a transposed view needs no copy),
// c (M, N) contiguous: the products of a captured step, which cuBLAS
// cannot be in CuPy (cuda_graph.py).
extern "C" __global__ void gemm(
        const REAL* a, const REAL* b, REAL* c, int M, int N, int K,
        long long a_row, long long a_col, long long b_row, long long b_col) {
    long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)M * N) return;
    long long i = t / N, j = t % N;
    REAL sum = (REAL)0;
    for (int k = 0; k < K; ++k)
        sum += a[i * a_row + k * a_col] * b[k * b_row + j * b_col];
    c[t] = sum;
}

// A captured step's first kernel: mini-batch number state[STEP] of the
// training data, m rows of n entries, into x (m, n) and its labels into
// y (m,); one thread per entry of x.
extern "C" __global__ void load_batch(
        const REAL* training_x, const int* training_y, REAL* x, int* y,
        const unsigned long long* state, int m, int n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)m * n) return;
    long long first = (long long)state[STEP] * m;
    x[i] = training_x[first * n + i];
    if (i < m) y[i] = training_y[first + i];
}

// A captured step's last kernel, one thread: the step's cost into its
// place in the epoch's costs, and the step number advanced.
extern "C" __global__ void next_step(
        const REAL* cost, REAL* costs, unsigned long long* state) {
    if (blockIdx.x * blockDim.x + threadIdx.x != 0) return;
    costs[state[STEP]] = *cost;
    state[STEP] += 1;
}

// col2im as a gather, one thread per image entry (n, y, x, c),
// channels-last: the sum of the patch gradients dcol (N, OH, OW, KH, KW,
// C) that saw it, dcol[n, y-l, x-m, l, m, c]; no two threads write to
// one place (no atomics).
extern "C" __global__ void col2im(
        const REAL* dcol, REAL* dx, int N, int H, int W, int C, int KH,
        int KW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * H * W * C) return;
    Entry e = entry_of(i, H, W, C);
    int n = e.n, y = e.y, x = e.x, c = e.c;
    int OH = H - KH + 1, OW = W - KW + 1;
    REAL sum = (REAL)0;
    for (int l = 0; l < KH; ++l) {
        int oy = y - l;
        if (oy < 0 || oy >= OH) continue;
        for (int m = 0; m < KW; ++m) {
            int ox = x - m;
            if (ox < 0 || ox >= OW) continue;
            sum += dcol[((((long long)n * OH + oy) * OW + ox) * KH * KW
                         + l * KW + m) * C + c];
        }
    }
    dx[i] = sum;
}
