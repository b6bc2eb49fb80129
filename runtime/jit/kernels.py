"""The compiled scans' building blocks: one step's reads, products, activations and routes.

Every generated scan (runtime/jit/codegen.py) calls these; they are compiled once per dtype
and kept in numba's file cache. Each works on one time step of a batch, (B, n) rows:

- `read` / `route`: the value of a unit or input at time tau as a connection reads it, and
  the way back of its gradient (docs/ARCHITECTURE.md "Runtime semantics": initial state
  before t = 0 or at padded steps, carried-in state, teacher forcing) — the compiled twin
  of runtime/tape.py's `Reads.read` / `Reads.read_backward`;
- `matmul_into`: an in-step product as explicit loops (products too large for loops leave
  the step to the interpreted scan: runtime/jit/scan.py's LOOP_BOUND);
- one forward and one backward per activation, side by side as in runtime/primitives.py.

Loops run over 1-D views: the whole (B, n) array flattened where it is contiguous (the
activations, leaks, whole-width sums), else row by row (`row = a[b]`, blocks of columns); the
compiler turns such loops into SIMD code (indexing a[b, j] in the inner loop keeps it scalar,
about 5x slower, and rows of a few units are too short to pay for a loop each).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.primitives import HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA  # numba reads them as constants

_jit = njit(cache=True, nogil=True, fastmath=False, error_model="numpy")


# --- reads and their gradients ---------------------------------------------------------------

@_jit
def read(out, X, tau, fill, init, valid, teach, tmask, forced):
    """The value of X (T, B, n) at time tau as seen by a reading connection: the view X[tau]
    where every sample has it as it is, else `out` filled row by row.

    fill (K, B, n): values for tau = -K..-1 (carried-in state or initial); init (B, n): the
    initial state (t >= T and padded steps); valid (T, B); teach: apply teacher forcing
    (delayed reads of a forced unit): forced[tau] where tmask[tau] is 1."""
    T, B, n = X.shape
    if tau < 0:
        k = fill.shape[0]
        out[:, :] = fill[k + tau] if k + tau >= 0 else init
        return out
    if tau >= T:
        out[:, :] = init
        return out
    plain = True
    for b in range(B):
        if not valid[tau, b] or (teach and tmask[tau, b] != 0):
            plain = False
            break
    if plain:
        return X[tau]
    for b in range(B):
        if not valid[tau, b]:
            out[b, :] = init[b]
        elif teach and tmask[tau, b] != 0:
            out[b, :] = forced[tau, b]
        else:
            out[b, :] = X[tau, b]
    return out


@_jit
def route(dX, tau, d, valid, teach, tmask, fill_learns, learns, dh0):
    """The gradient d (B, n) of one read of time tau: into dX[tau] (T, B, n), or into the
    learned initial state dh0 (n,) where the read gave the initial state.

    fill_learns (K,): whether reads of tau = -K..-1 gave the learned h0 (not a carried state);
    learns: whether the unit has a learned h0 at all."""
    T, B, n = dX.shape
    if tau < 0 or tau >= T:
        k = fill_learns.shape[0]
        if (tau < 0 and k + tau >= 0 and fill_learns[k + tau]) or (tau >= T and learns) \
                or (tau < 0 and k + tau < 0 and learns):
            for b in range(B):
                row = d[b]
                for j in range(n):
                    dh0[j] += row[j]
        return
    for b in range(B):
        f = 1.0 - tmask[tau, b] if teach else 1.0
        row = d[b]
        if valid[tau, b]:
            target = dX[tau, b]
        elif learns:
            target = dh0
        else:
            continue
        for j in range(n):
            target[j] += row[j] * f


# --- in-step products --------------------------------------------------------------------------

@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _dot(a, b):
    """sum(a * b) over two contiguous rows, vectorised (the sum is reassociated, as BLAS does)."""
    acc = a[0] * b[0]
    for i in range(1, a.shape[0]):
        acc += a[i] * b[i]
    return acc


@_jit
def matmul_loops(x, WT, W, out):
    """out (B, m) = x (B, k) @ WT (k, m) as explicit loops (faster than a BLAS call when small),
    W = WT.T (m, k) contiguous: rows of WT when m is the longer side, dot products with rows
    of W when k is, so the inner loop is the long one."""
    B, k = x.shape
    m = WT.shape[1]
    for b in range(B):
        o, xb = out[b], x[b]
        if m >= k:
            o[:] = 0.0
            for i in range(k):
                xi, w = xb[i], WT[i]
                for j in range(m):
                    o[j] += xi * w[j]
        else:
            for j in range(m):
                o[j] = _dot(xb, W[j])


@_jit
def matmul_into(x, WT, W, out):
    """out (B, m) = x (B, k) @ WT (k, m) (W = WT.T). Always our own loops: a BLAS call from
    here would go to a second BLAS library (SciPy's, which numba uses), slower than NumPy's
    and fighting its threads; products too large for loops run in the interpreted scan."""
    matmul_loops(x, WT, W, out)


@_jit
def add_bias(out, bias):
    B, m = out.shape
    for b in range(B):
        o = out[b]
        for j in range(m):
            o[j] += bias[j]


@_jit
def weigh(x, W, WT, diag, out):
    """out = x @ W.T (WT: W transposed, contiguous) for a matrix weight, x * W[0] for a
    diagonal one (W = WT (1, n): diagonal, identity and scalar fixed weights). The gradient
    with respect to x is weigh(dy, WT, W, diag, dx): dy @ W, or dy * W[0]."""
    if diag:
        B, n = x.shape
        w = W[0]
        for b in range(B):
            o, xb = out[b], x[b]
            for j in range(n):
                o[j] = xb[j] * w[j]
    else:
        matmul_into(x, WT, W, out)


# --- sums, copies and gates over column blocks ----------------------------------------------
# `src[:, lo:lo + n]` is the block of a fused product (B, width) that belongs to one connection;
# n is the width of the other operand. Offsets travel as integers so that the generated code
# holds no array expressions (each costs numba a long compile) and no sizes.

@_jit
def zero(out):
    out[:, :] = 0.0


@_jit
def _copy_block(dst, dlo, src, slo, n):
    """dst[:, dlo:dlo + n] = src[:, slo:slo + n]."""
    B = dst.shape[0]
    if dlo == 0 and slo == 0 and dst.shape[1] == n and src.shape[1] == n:
        dst[:, :] = src
        return
    for b in range(B):
        o, s = dst[b, dlo:dlo + n], src[b, slo:slo + n]
        for j in range(n):
            o[j] = s[j]


@_jit
def copy_cols(dst, lo, src):
    """dst[:, lo:lo + n] = src."""
    _copy_block(dst, lo, src, 0, src.shape[1])


@_jit
def take_cols(dst, src, lo):
    """dst = src[:, lo:lo + n]."""
    _copy_block(dst, 0, src, lo, dst.shape[1])


@_jit
def add_cols(acc, src, lo):
    """acc += src[:, lo:lo + n]."""
    B, n = acc.shape
    if lo == 0 and src.shape[1] == n:
        a, s = acc.reshape(B * n), src.reshape(B * n)
        for j in range(B * n):
            a[j] += s[j]
        return
    for b in range(B):
        a, s = acc[b], src[b, lo:lo + n]
        for j in range(n):
            a[j] += s[j]


@_jit
def gated_add_cols(acc, g, complement, src, lo):
    """acc += (g or 1 - g) * src[:, lo:lo + n]."""
    B, n = acc.shape
    for b in range(B):
        a, gb, s = acc[b], g[b], src[b, lo:lo + n]
        if complement:
            for j in range(n):
                a[j] += (1.0 - gb[j]) * s[j]
        else:
            for j in range(n):
                a[j] += gb[j] * s[j]


@_jit
def gate_mul_cols(dst, lo, g, complement, x):
    """dst[:, lo:lo + n] = (g or 1 - g) * x."""
    B, n = x.shape
    for b in range(B):
        o, gb, xb = dst[b, lo:lo + n], g[b], x[b]
        if complement:
            for j in range(n):
                o[j] = (1.0 - gb[j]) * xb[j]
        else:
            for j in range(n):
                o[j] = gb[j] * xb[j]


@_jit
def gate_grad_cols(dg, complement, d, other, lo):
    """dg += d(loss)/d(gate) = +-(d * other[:, lo:lo + n])."""
    B, n = dg.shape
    for b in range(B):
        o, db, s = dg[b], d[b], other[b, lo:lo + n]
        if complement:
            for j in range(n):
                o[j] -= db[j] * s[j]
        else:
            for j in range(n):
                o[j] += db[j] * s[j]


# --- leaks -------------------------------------------------------------------------------------

@_jit
def leak(out, alpha, prev, a):
    """out = alpha * prev + (1 - alpha) * a."""
    B, n = out.shape
    o, p, ab = out.reshape(B * n), prev.reshape(B * n), a.reshape(B * n)
    for i in range(B * n):
        al = alpha[i % n]
        o[i] = al * p[i] + (1.0 - al) * ab[i]


@_jit
def scale_rows(out, s, d):
    """out = s * d with s (n,) per unit."""
    B, n = out.shape
    o, db = out.reshape(B * n), d.reshape(B * n)
    for i in range(B * n):
        o[i] = s[i % n] * db[i]


# --- activations: forward in place on net, backward from the output a --------------------------
# `fast` (float32 networks): tanh as a rational function that the compiler vectorises, exact to
# a few float32 ulps; float64 networks use libm's tanh (the interpreter's results to ~1e-16).

@njit(cache=True, inline="always")
def _tanh_f32(x):
    """tanh to float32 precision: x p(x^2) / q(x^2) on [-7.9, 7.9] (Eigen's fast tanh),
    computed in float32 (8 lanes per AVX2 instruction)."""
    f = np.float32
    x = min(max(f(x), f(-7.90531110763549805)), f(7.90531110763549805))
    x2 = x * x
    p = f(-2.76076847742355e-16)
    p = p * x2 + f(2.00018790482477e-13)
    p = p * x2 + f(-8.60467152213735e-11)
    p = p * x2 + f(5.12229709037114e-08)
    p = p * x2 + f(1.48572235717979e-05)
    p = p * x2 + f(6.37261928875436e-04)
    p = p * x2 + f(4.89352455891786e-03)
    q = f(1.19825839466702e-06)
    q = q * x2 + f(1.18534705686654e-04)
    q = q * x2 + f(2.26843463243900e-03)
    q = q * x2 + f(4.89352518554385e-03)
    return x * p / q


@_jit
def identity(x, lo, hi, fast):
    pass


@_jit
def identity_back(a, da, out, lo, hi):
    out[:, :] = da


@_jit
def tanh(x, lo, hi, fast):
    n = x.size
    r = x.reshape(n)
    if fast:
        for j in range(n):
            r[j] = _tanh_f32(r[j])
    else:
        for j in range(n):
            r[j] = math.tanh(r[j])


@_jit
def tanh_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] * (1.0 - ab[j] * ab[j])


@_jit
def sigmoid(x, lo, hi, fast):
    """sigma(x) = (1 + tanh(x/2)) / 2, the formula of runtime/primitives.py (no overflow)."""
    n = x.size
    r = x.reshape(n)
    if fast:
        for j in range(n):
            r[j] = np.float32(0.5) * _tanh_f32(np.float32(0.5) * r[j]) + np.float32(0.5)
    else:
        for j in range(n):
            r[j] = 0.5 * math.tanh(0.5 * r[j]) + 0.5


@_jit
def sigmoid_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] * ab[j] * (1.0 - ab[j])


@_jit
def scaled_sigmoid(x, lo, hi, fast):
    sigmoid(x, lo, hi, fast)
    r = x.reshape(x.size)
    for j in range(x.size):
        r[j] = r[j] * (hi - lo) + lo


@_jit
def scaled_sigmoid_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] * ((ab[j] - lo) * (hi - ab[j]) / (hi - lo))


@_jit
def hard_sigmoid(x, lo, hi, fast):
    n = x.size
    r = x.reshape(n)
    for j in range(n):
        r[j] = min(max(HARD_SIGMOID_ALPHA * r[j] + HARD_SIGMOID_BETA, 0.0), 1.0)


@_jit
def hard_sigmoid_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] * HARD_SIGMOID_ALPHA if 0.0 < ab[j] < 1.0 else 0.0


@_jit
def hard_tanh(x, lo, hi, fast):
    n = x.size
    r = x.reshape(n)
    for j in range(n):
        r[j] = min(max(r[j], lo), hi)


@_jit
def hard_tanh_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] if lo < ab[j] < hi else 0.0


@_jit
def relu(x, lo, hi, fast):
    n = x.size
    r = x.reshape(n)
    for j in range(n):
        r[j] = max(r[j], 0.0)


@_jit
def relu_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] if ab[j] > 0.0 else 0.0


@_jit
def softplus(x, lo, hi, fast):
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|)."""
    n = x.size
    r = x.reshape(n)
    for j in range(n):
        v = r[j]
        r[j] = max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@_jit
def softplus_back(a, da, out, lo, hi):
    n = a.size
    o, ab, db = out.reshape(n), a.reshape(n), da.reshape(n)
    for j in range(n):
        o[j] = db[j] * -math.expm1(-ab[j])


@_jit
def softmax(x, lo, hi, fast):
    B, n = x.shape
    for b in range(B):
        r = x[b]
        m = r[0]
        for j in range(1, n):
            m = max(m, r[j])
        s = 0.0
        for j in range(n):
            r[j] = math.exp(r[j] - m)
            s += r[j]
        for j in range(n):
            r[j] /= s


@_jit
def softmax_back(a, da, out, lo, hi):
    B, n = a.shape
    for b in range(B):
        o, ab, db = out[b], a[b], da[b]
        s = 0.0
        for j in range(n):
            s += db[j] * ab[j]
        for j in range(n):
            o[j] = ab[j] * (db[j] - s)
