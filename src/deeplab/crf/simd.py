"""Explicit SIMD row kernels for numba (LLVM IR intrinsics): float32 vectors of 8 and WIDE = 16 lanes.

The lattice's inner loops combine a few rows of length L (labels, padded to a multiple of 8):
``acc += sum_r w_r V[o_r]`` (slice) and ``V[o_r] += w_r x`` (splat). Written as plain numba loops,
LLVM adds runtime alias checks to every short row loop and serialises the accumulation through
memory; these intrinsics keep the accumulators in vector registers and emit unaligned vector
loads/stores directly. ``softmax_row`` does the same for the per-pixel softmax (the auto-vectoriser
picks 64-lane loops there, so a 24-label row ran scalar). All arrays must be C-contiguous float32 (int32
for offsets); no bounds checks. Exception: blurred vertex rows may be stored as half precision (float16
values in uint16 arrays, half the memory traffic): ``blur_row``, ``prefetch_row`` and the gather of
``meanfield_rows`` convert on load and store (vcvtph2ps / vcvtps2ph on x86), and ``meanfield_rows`` may read its
energy rows as int16 fixed point (UNARY_STEP).

Vector width. The hot kernels (``meanfield_rows``, ``blur_row``) hold a label row as WIDE-lane vectors while they
fit, then one of 8 lanes (``row_chunks``: 21 labels -> 16 + 8). With AVX-512 a 16-lane vector is one zmm register
and one instruction, so the per-corner work of a pass takes two instructions where three 8-lane ones did
(measured on an AMD Zen 5, ten iterations side by side in one process over 19 photos: median 1.065x; the
lattices that stay in cache gain most, the largest, which wait on memory, about nothing). LLVM splits 16-lane
vectors into two 8-lane halves on CPUs without AVX-512: the same instructions as before, the same results. The
other row kernels keep 8 lanes (they are not on the CRF's hot path).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_W = 8
_VEC = ir.VectorType(ir.FloatType(), _W)
# Energies (= -unary) are kept >= ENERGY_FLOOR; padding label lanes hold PAD_ENERGY, far below: whatever
# finite unary a user passes, a padding lane can never tie with a real label (exp underflows to exactly 0).
ENERGY_FLOOR = -1e30
PAD_ENERGY = -3e38
_FAST = ("fast",)


def _data(context, builder, ty, val):
    return context.make_array(ty)(context, builder, val).data


def _vec(width):
    return ir.VectorType(ir.FloatType(), width)


def _splat(builder, scalar, width=_W):
    """<width x T> of a scalar of type T."""
    vec = ir.Constant(ir.VectorType(scalar.type, width), ir.Undefined)
    for k in range(width):
        vec = builder.insert_element(vec, scalar, ir.Constant(ir.IntType(32), k))
    return vec


def _lanes(builder, vec, start, width):
    """Lanes start..start+width-1 of vec as a <width x T> vector (the low half of a register costs nothing)."""
    mask = ir.Constant(ir.VectorType(ir.IntType(32), width), list(range(start, start + width)))
    return builder.shuffle_vector(vec, vec, mask)


def _splats(builder, scalar, widths):
    """{width: <width x T> of scalar} for each width, from one broadcast to the widest."""
    wide = _splat(builder, scalar, max(widths))
    return {w: wide if w == wide.type.count else _lanes(builder, wide, 0, w) for w in set(widths)}


def _vload(builder, base, index, width=_W):
    return builder.load(builder.bitcast(builder.gep(base, [index]), _vec(width).as_pointer()), align=4)


def _vstore(builder, value, base, index):
    builder.store(value, builder.bitcast(builder.gep(base, [index]), value.type.as_pointer()), align=4)


UNARY_STEP = 2.0**-11  # energy per unit of an int16 energy row (meanfield_rows)
WIDE = 16  # float32 lanes of the widest vectors of a label row (a zmm register with AVX-512; LLVM splits it elsewhere)


def row_chunks(lanes: int) -> list[tuple[int, int]]:
    """A row of ``lanes`` labels (a multiple of 8) as (first lane, width) vectors: WIDE lanes while they fit, then 8."""
    chunks, at = [], 0
    while lanes - at >= WIDE:
        chunks.append((at, WIDE))
        at += WIDE
    chunks += [(k, _W) for k in range(at, lanes, _W)]
    return chunks


def _is_half(ty) -> bool:
    """Arrays of uint16 hold IEEE half-precision values (vertex rows stored narrow)."""
    return ty.dtype == types.uint16


def _vload_any(builder, base, index, half, width=_W):
    """``width`` lanes at base[index] as <width x float>; ``half``: base is i16* holding float16 values."""
    if not half:
        return _vload(builder, base, index, width)
    hvec = ir.VectorType(ir.HalfType(), width)
    raw = builder.load(builder.bitcast(builder.gep(base, [index]), hvec.as_pointer()), align=2)
    return builder.fpext(raw, _vec(width))


def _vstore_any(builder, value, base, index, half):
    """Store a float vector at base[index]; ``half``: rounded to float16 into i16* base."""
    if not half:
        return _vstore(builder, value, base, index)
    hvec = ir.VectorType(ir.HalfType(), value.type.count)
    builder.store(builder.fptrunc(value, hvec), builder.bitcast(builder.gep(base, [index]), hvec.as_pointer()), align=2)


def _as_float(context, builder, val, ty):
    return val if ty == types.float32 else context.cast(builder, val, ty, types.float32)


def _for_lane_groups(context, builder, nl, emit):
    """Call emit(kb0, group) over the L lanes in groups of 4 x 8 (then one group of 1-3 x 8 lanes)."""
    intp = context.get_value_type(types.intp)
    nchunks = builder.sdiv(nl, ir.Constant(intp, _W))
    full = builder.sdiv(nchunks, ir.Constant(intp, 4))
    with cgutils.for_range(builder, full) as g:
        emit(builder.mul(g.index, ir.Constant(intp, 4 * _W)), 4)
    rest = builder.srem(nchunks, ir.Constant(intp, 4))
    kb0 = builder.mul(full, ir.Constant(intp, 4 * _W))
    for group in (1, 2, 3):
        with builder.if_then(builder.icmp_signed("==", rest, ir.Constant(intp, group))):
            emit(kb0, group)


def _row_start(context, builder, starts_p, e):
    """Element e of a row-start array (int32 or int64) as an intp."""
    v = builder.load(builder.gep(starts_p, [e]))
    intp = context.get_value_type(types.intp)
    return builder.sext(v, intp) if v.type.width < intp.width else v


def _scatter_group(context, builder, b_p, base, x_p, off_p, w_p, row, nr, kb0, group):
    """bufs[row start s_r + kb0 : ... + 8 * group] += w_r x[same lanes] for every r, x held in registers."""
    intp = context.get_value_type(types.intp)
    lanes = [builder.add(kb0, ir.Constant(intp, _W * j)) for j in range(group)]
    xs = [_vload(builder, x_p, kb) for kb in lanes]
    with cgutils.for_range(builder, nr) as rr:
        e = builder.add(row, rr.index)
        w = _splat(builder, builder.load(builder.gep(w_p, [e])))
        rowbase = builder.add(base, _row_start(context, builder, off_p, e))
        for xv, kb in zip(xs, lanes, strict=True):
            at = builder.add(rowbase, kb)
            _vstore(
                builder, builder.fadd(_vload(builder, b_p, at), builder.fmul(w, xv, flags=_FAST), flags=_FAST), b_p, at
            )


def _gather_group(context, builder, acc_p, verts_p, off_p, w_p, row, nr, kb0, group):
    """acc[kb0 : kb0 + 8 * group] += sum_r w_r verts[row start s_r + same lanes], ``group`` independent
    register chains."""
    intp = context.get_value_type(types.intp)
    accs = [cgutils.alloca_once(builder, _VEC) for _ in range(group)]  # promoted to registers by mem2reg
    lanes = [builder.add(kb0, ir.Constant(intp, _W * j)) for j in range(group)]
    for a, kb in zip(accs, lanes, strict=True):
        builder.store(_vload(builder, acc_p, kb), a)
    with cgutils.for_range(builder, nr) as rr:
        e = builder.add(row, rr.index)
        w = _splat(builder, builder.load(builder.gep(w_p, [e])))
        base = _row_start(context, builder, off_p, e)
        for a, kb in zip(accs, lanes, strict=True):
            x = _vload(builder, verts_p, builder.add(base, kb))
            builder.store(builder.fadd(builder.load(a), builder.fmul(w, x, flags=_FAST), flags=_FAST), a)
    for a, kb in zip(accs, lanes, strict=True):
        _vstore(builder, builder.load(a), acc_p, kb)


@intrinsic
def gather_rows(typingctx, acc, verts, starts, weight, i):
    """acc[:L] += sum_r weight[i, r] * verts[v_r, :L] for r < starts.shape[1], starts[i, r] = v_r * L.

    acc: (L,) float32; verts: (M+1, L) float32; starts: (N, R) int32 or int64 row starts (see
    lattice.row_starts); weight: (N, R) float32; L % 8 == 0.
    Lanes are processed in groups of up to 4 x 8 with one register accumulator each, so the sum over r
    runs as independent FMA chains.
    """
    sig = types.void(acc, verts, starts, weight, i)

    def codegen(context, builder, signature, args):
        acc_v, verts_v, off_v, w_v, i_v = args
        acc_p = _data(context, builder, signature.args[0], acc_v)
        verts_p = _data(context, builder, signature.args[1], verts_v)
        off_p = _data(context, builder, signature.args[2], off_v)
        w_p = _data(context, builder, signature.args[3], w_v)
        nl = cgutils.unpack_tuple(builder, context.make_array(signature.args[1])(context, builder, verts_v).shape, 2)[1]
        nr = cgutils.unpack_tuple(builder, context.make_array(signature.args[2])(context, builder, off_v).shape, 2)[1]
        row = builder.mul(context.cast(builder, i_v, signature.args[4], types.intp), nr)
        _for_lane_groups(
            context,
            builder,
            nl,
            lambda kb0, group: _gather_group(context, builder, acc_p, verts_p, off_p, w_p, row, nr, kb0, group),
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def scatter_rows(typingctx, bufs, chunk, x, starts, weight, i):
    """bufs[chunk, v_r, :L] += weight[i, r] * x[:L] for r < starts.shape[1], starts[i, r] = v_r * L.

    bufs: (C, M+1, L) float32; x: (L,) float32; starts: (N, R) int32 or int64 row starts; weight: (N, R)
    float32; L % 8 == 0.
    x is loaded once per group of up to 4 x 8 lanes and held in registers over the rows r.
    """
    sig = types.void(bufs, chunk, x, starts, weight, i)

    def codegen(context, builder, signature, args):
        b_v, c_v, x_v, off_v, w_v, i_v = args
        b_arr = context.make_array(signature.args[0])(context, builder, b_v)
        b_p = b_arr.data
        shape = cgutils.unpack_tuple(builder, b_arr.shape, 3)
        nl = shape[2]
        base = builder.mul(builder.mul(context.cast(builder, c_v, signature.args[1], types.intp), shape[1]), nl)
        x_p = _data(context, builder, signature.args[2], x_v)
        off_p = _data(context, builder, signature.args[3], off_v)
        w_p = _data(context, builder, signature.args[4], w_v)
        nr = cgutils.unpack_tuple(builder, context.make_array(signature.args[3])(context, builder, off_v).shape, 2)[1]
        row = builder.mul(context.cast(builder, i_v, signature.args[5], types.intp), nr)
        _for_lane_groups(
            context,
            builder,
            nl,
            lambda kb0, group: _scatter_group(context, builder, b_p, base, x_p, off_p, w_p, row, nr, kb0, group),
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def blur_row(typingctx, y, x, w, v, n1, n2):
    """y[w, :L] = x[v, :L] + (x[n1, :L] + x[n2, :L]) / 2: the [1/2, 1, 1/2] lattice stencil for one vertex
    (w: where its row goes, v == w unless the blur also reorders the rows).

    y, x: (M+1, L) C-contiguous float32, or uint16 holding float16 (distinct arrays; either may be half,
    computed in float32); w, v, n1, n2: row indices. WIDE-lane vectors, then 8-lane ones, then a scalar loop
    over the last L % 8 lanes.
    """
    sig = types.void(y, x, w, v, n1, n2)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        y_arr = context.make_array(signature.args[0])(context, builder, args[0])
        x_p = _data(context, builder, signature.args[1], args[1])
        y_half, x_half = _is_half(signature.args[0]), _is_half(signature.args[1])
        nl = cgutils.unpack_tuple(builder, y_arr.shape, 2)[1]
        out_row, *rows = [
            builder.mul(context.cast(builder, val, ty, types.intp), nl)
            for val, ty in zip(args[2:], signature.args[2:], strict=True)
        ]

        def stencil(centre, left, right, half):
            return builder.fadd(
                centre, builder.fmul(half, builder.fadd(left, right, flags=_FAST), flags=_FAST), flags=_FAST
            )

        def vectors(kb, width):
            vecs = [_vload_any(builder, x_p, builder.add(r, kb), x_half, width) for r in rows]
            half = _splat(builder, ir.Constant(ir.FloatType(), 0.5), width)
            _vstore_any(builder, stencil(*vecs, half), y_arr.data, builder.add(out_row, kb), y_half)

        tail = ir.Constant(intp, 0)
        for width in (WIDE, _W):  # wide vectors while they fit, then 8-lane ones
            count = builder.sdiv(builder.sub(nl, tail), ir.Constant(intp, width))
            with cgutils.for_range(builder, count) as g:
                vectors(builder.add(tail, builder.mul(g.index, ir.Constant(intp, width))), width)
            tail = builder.add(tail, builder.mul(count, ir.Constant(intp, width)))

        def load(p, at, half):
            val = builder.load(builder.gep(p, [at]))
            return builder.fpext(builder.bitcast(val, ir.HalfType()), ir.FloatType()) if half else val

        with cgutils.for_range(builder, builder.sub(nl, tail)) as k:
            ats = [builder.add(r, builder.add(tail, k.index)) for r in rows]
            out = stencil(*[load(x_p, a, x_half) for a in ats], ir.Constant(ir.FloatType(), 0.5))
            if y_half:
                out = builder.bitcast(builder.fptrunc(out, ir.HalfType()), ir.IntType(16))
            builder.store(out, builder.gep(y_arr.data, [builder.add(out_row, builder.add(tail, k.index))]))
        return context.get_dummy_value()

    return sig, codegen


def _prefetch(builder, address):
    """Hint the CPU to fetch the cache line at ``address`` (float*) for reading."""
    i8p = ir.IntType(8).as_pointer()
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [i8p, ir.IntType(32), ir.IntType(32), ir.IntType(32)]),
        "llvm.prefetch.p0i8",
    )
    i32 = ir.IntType(32)
    builder.call(fn, [builder.bitcast(address, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])


def _straddles(row_bytes: int) -> bool:
    """True if a row of row_bytes, starting at a multiple of row_bytes from a cache-line boundary, can touch one line
    more than ceil(row_bytes / 64) (e.g. 48 bytes: 24 float16 values). With r = row_bytes % 64, a row starts at a
    multiple of the largest power of two dividing r within its line, so it reaches one line further iff r is not
    itself a power of two."""
    r = row_bytes % 64
    return r & (r - 1) != 0


def _prefetch_row_lines(builder, base, start, lanes, half):
    """Prefetch the cache lines of the ``lanes`` values base[start:start + lanes] (float* or, ``half``, i16*; rows
    of ``lanes`` values from a cache-line-aligned base): one prefetch per line's worth of lanes, and one at the last
    lane if the row may touch a line more (_straddles)."""
    per_line = 32 if half else 16
    firsts = [*range(0, lanes, per_line)] + ([lanes - 1] if _straddles(lanes * (2 if half else 4)) else [])
    for first in firsts:
        _prefetch(builder, builder.gep(base, [builder.add(start, ir.Constant(start.type, first))]))


@intrinsic
def prefetch_row(typingctx, x, v):
    """Prefetch row v of x (M+1, L) C-contiguous float32 or uint16 (float16): the cache lines of its L values (a
    hint; no effect on results). The hints cover the row's lines when x starts on one (lattice.aligned_zeros)."""
    sig = types.void(x, v)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        nl = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
        start = builder.mul(context.cast(builder, args[1], signature.args[1], types.intp), nl)
        per_line = 32 if _is_half(signature.args[0]) else 16
        lines = builder.sdiv(builder.add(nl, ir.Constant(intp, per_line - 1)), ir.Constant(intp, per_line))
        with cgutils.for_range(builder, lines) as line:
            at = builder.add(start, builder.mul(line.index, ir.Constant(intp, per_line)))
            _prefetch(builder, builder.gep(arr.data, [at]))
        # and the last value's line, which a row not filling whole lines can reach (_straddles): unconditionally,
        # as a redundant hint costs less than the test in the blur loop (measured)
        _prefetch(builder, builder.gep(arr.data, [builder.add(start, builder.sub(nl, ir.Constant(intp, 1)))]))
        return context.get_dummy_value()

    return sig, codegen


def _hreduce(builder, vecs, combine):
    """Reduction of all lanes of float vectors (any widths, powers of two) to a scalar with ``combine(builder, a,
    b)``: wide vectors fold their halves down to 8 lanes, the 8-lane vectors combine, then 3 shuffle steps."""
    acc = None
    for vec in vecs:
        while vec.type.count > _W:
            half = vec.type.count // 2
            vec = combine(builder, _lanes(builder, vec, 0, half), _lanes(builder, vec, half, half))
        acc = vec if acc is None else combine(builder, acc, vec)
    for half in (4, 2, 1):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), _W), [k + half if k < half else k for k in range(_W)])
        acc = combine(builder, acc, builder.shuffle_vector(acc, acc, mask))
    return builder.extract_element(acc, ir.Constant(ir.IntType(32), 0))


def _vmax(builder, a, b):
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


def _vadd(builder, a, b):
    return builder.fadd(a, b, flags=_FAST)


@intrinsic
def row_change(typingctx, new, old, v):
    """max over the L values of |new[v] - old[v]|, as float32: rows of (M+1, L) float32 arrays, or of uint16
    arrays holding float16 values (L % 8 == 0)."""
    sig = types.float32(new, old, v)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        new_arr = context.make_array(signature.args[0])(context, builder, args[0])
        old_p = _data(context, builder, signature.args[1], args[1])
        halves = [_is_half(t) for t in signature.args[:2]]
        nl = cgutils.unpack_tuple(builder, new_arr.shape, 2)[1]
        start = builder.mul(context.cast(builder, args[2], signature.args[2], types.intp), nl)
        acc = cgutils.alloca_once_value(builder, ir.Constant(_VEC, [0.0] * _W))
        with cgutils.for_range(builder, builder.sdiv(nl, ir.Constant(intp, _W))) as g:
            at = builder.add(start, builder.mul(g.index, ir.Constant(intp, _W)))
            a, b = (_vload_any(builder, p, at, h) for p, h in zip((new_arr.data, old_p), halves, strict=True))
            d = builder.fsub(a, b)
            builder.store(_vmax(builder, builder.load(acc), _vmax(builder, d, builder.fneg(d))), acc)
        return _hreduce(builder, [builder.load(acc)], _vmax)

    return sig, codegen


def _arithmetic(builder, width=_W):
    """(constant, multiply, add) shorthands on float vectors of ``width`` lanes for polynomial code."""
    return (
        lambda v: _splat(builder, ir.Constant(ir.FloatType(), v), width),
        lambda a, b: builder.fmul(a, b, flags=_FAST),
        lambda a, b: _vadd(builder, a, b),
    )


# exp(r) ~ 1 + r (c1 + r (c2 + ...)) on |r| <= ln(2)/2: relative-error fit, max rel. err 1.7e-7 in float32
_EXP_POLY = (8.29031e-3, 4.189793e-2, 1.6667636e-1, 4.999915e-1, 9.9999971e-1, 1.0)


def _vexp_nonpositive(builder, x):
    """exp(x) for x <= 0, a float vector of any width (Cody-Waite range reduction + degree-5 polynomial, rel. err
    ~2e-7); exactly 0 below -80 (keeps later products clear of slow denormals)."""
    width = x.type.count
    c, mul, add = _arithmetic(builder, width)
    small = builder.fcmp_ordered("<", x, c(-80.0))
    x = builder.select(small, c(-80.0), x)
    floor = cgutils.get_or_insert_function(builder.module, ir.FunctionType(x.type, [x.type]), f"llvm.floor.v{width}f32")
    n = builder.call(floor, [add(mul(x, c(1.44269504088896341)), c(0.5))])
    r = add(builder.fsub(x, mul(n, c(0.693359375)), flags=_FAST), mul(n, c(2.12194440e-4)))
    p = c(_EXP_POLY[0])
    for coef in _EXP_POLY[1:]:
        p = add(mul(p, r), c(coef))
    ivec = ir.VectorType(ir.IntType(32), width)
    bits = builder.shl(
        builder.add(builder.fptosi(n, ivec), ir.Constant(ivec, [127] * width)), ir.Constant(ivec, [23] * width)
    )
    y = mul(p, builder.bitcast(bits, x.type))
    return builder.select(small, c(0.0), y)


def _reciprocal_splat(builder, x, widths=(_W,)):
    """{width: lanes of 1 / x} for a float scalar x (see _splats)."""
    return _splats(builder, builder.fdiv(ir.Constant(ir.FloatType(), 1.0), x, flags=_FAST), widths)


_LOG_POLY = (
    7.0376836292e-2,
    -1.1514610310e-1,
    1.1676998740e-1,
    -1.2420140846e-1,
    1.4249322787e-1,
    -1.6668057665e-1,
    2.0000714765e-1,
    -2.4999993993e-1,
    3.3333331174e-1,
)


def _vlog_positive(builder, x):
    """log(x) for positive normal x, 8 lanes (Cephes-style: x = m 2^e with m in [sqrt(1/2), sqrt(2)),
    degree-9 polynomial in m - 1; rel. err ~1e-7)."""
    c, mul, add = _arithmetic(builder)
    ivec = ir.VectorType(ir.IntType(32), _W)
    bits = builder.bitcast(x, ivec)
    e = builder.sitofp(
        builder.sub(builder.lshr(bits, ir.Constant(ivec, [23] * _W)), ir.Constant(ivec, [126] * _W)), _VEC
    )
    m = builder.bitcast(
        builder.or_(builder.and_(bits, ir.Constant(ivec, [0x807FFFFF] * _W)), ir.Constant(ivec, [0x3F000000] * _W)),
        _VEC,
    )  # m in [1/2, 1)
    small = builder.fcmp_ordered("<", m, c(0.707106781186547524))
    e = builder.select(small, builder.fsub(e, c(1.0), flags=_FAST), e)
    m = builder.fsub(builder.select(small, add(m, m), m), c(1.0), flags=_FAST)
    z = mul(m, m)
    p = c(_LOG_POLY[0])
    for coef in _LOG_POLY[1:]:
        p = add(mul(p, m), c(coef))
    y = add(mul(mul(m, z), p), mul(e, c(-2.12194440e-4)))
    y = add(y, mul(z, c(-0.5)))
    return add(add(m, y), mul(e, c(0.693359375)))


@intrinsic
def softmax_row(typingctx, e):
    """e[:L] = softmax(e[:L]) in place; e: (L,) C-contiguous float32, L % 8 == 0, entries finite."""
    sig = types.void(e)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        p = arr.data
        nchunks = builder.sdiv(cgutils.unpack_tuple(builder, arr.shape, 1)[0], ir.Constant(intp, _W))
        acc = cgutils.alloca_once(builder, _VEC)
        builder.store(_vload(builder, p, ir.Constant(intp, 0)), acc)
        with cgutils.for_range(builder, nchunks) as ch:
            x = _vload(builder, p, builder.mul(ch.index, ir.Constant(intp, _W)))
            builder.store(_vmax(builder, builder.load(acc), x), acc)
        mx = _splat(builder, _hreduce(builder, [builder.load(acc)], _vmax))
        builder.store(ir.Constant(_VEC, [0.0] * _W), acc)
        with cgutils.for_range(builder, nchunks) as ch:
            kb = builder.mul(ch.index, ir.Constant(intp, _W))
            y = _vexp_nonpositive(builder, builder.fsub(_vload(builder, p, kb), mx, flags=_FAST))
            _vstore(builder, y, p, kb)
            builder.store(builder.fadd(builder.load(acc), y, flags=_FAST), acc)
        inv = _reciprocal_splat(builder, _hreduce(builder, [builder.load(acc)], _vadd))[_W]
        with cgutils.for_range(builder, nchunks) as ch:
            kb = builder.mul(ch.index, ir.Constant(intp, _W))
            _vstore(builder, builder.fmul(_vload(builder, p, kb), inv, flags=_FAST), p, kb)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def copy_row(typingctx, dst, src):
    """dst[:L] = src[:L]; dst, src: (L,) C-contiguous float32, L % 8 == 0."""
    sig = types.void(dst, src)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        dst_arr = context.make_array(signature.args[0])(context, builder, args[0])
        src_p = _data(context, builder, signature.args[1], args[1])
        nchunks = builder.sdiv(cgutils.unpack_tuple(builder, dst_arr.shape, 1)[0], ir.Constant(intp, _W))
        with cgutils.for_range(builder, nchunks) as ch:
            kb = builder.mul(ch.index, ir.Constant(intp, _W))
            _vstore(builder, _vload(builder, src_p, kb), dst_arr.data, kb)
        return context.get_dummy_value()

    return sig, codegen


def _softmax_registers(builder, xs):
    """softmax over the lanes of the float vectors xs (a row of labels held in registers, any widths): the
    vectors, and the largest probability as a float scalar (1 / the sum of exp(x - max x))."""
    widths = [x.type.count for x in xs]
    mx = _splats(builder, _hreduce(builder, xs, _vmax), widths)
    ys = [_vexp_nonpositive(builder, builder.fsub(x, mx[x.type.count], flags=_FAST)) for x in xs]
    top = builder.fdiv(ir.Constant(ir.FloatType(), 1.0), _hreduce(builder, ys, _vadd), flags=_FAST)
    inv = _splats(builder, top, widths)
    return [builder.fmul(y, inv[y.type.count], flags=_FAST) for y in ys], top


MAX_REGISTER_LABELS = 4 * _W  # meanfield_rows handles label rows up to this width
PIXELS_PER_STEP = 2  # meanfield_rows interleaves this many pixels' updates (1 in the prefetching build: see there)
PREFETCH_PIXELS = 10  # with prefetch, meanfield_rows fetches the vertex rows of the pixel this far ahead


def _meanfield_rows_intrinsic(prefetch: bool, skip: bool = False):
    """meanfield_rows (or, ``skip``, meanfield_rows_skip), generated with or without prefetching (a separate
    compile-time specialisation: a runtime switch in the pixel loop slowed the passes that do not prefetch)."""

    def codegen(context, builder, signature, args):
        nu_v, q_v, verts_v, off_v, bary_v, scales_v, bufs_v, c_v, lo_v, hi_v, gather_v, scatter_v, write_v = args[:13]
        ty = signature.args
        intp = context.get_value_type(types.intp)

        def array(index, value):
            return context.make_array(ty[index] if isinstance(index, int) else ty[index[0]][index[1]])(
                context, builder, value
            )

        def as_intp(index, value):
            return context.cast(builder, value, ty[index], types.intp)

        nu = array(0, nu_v)
        fixed_unary = ty[0].dtype == types.int16
        nl = cgutils.unpack_tuple(builder, nu.shape, 2)[1]
        q = array(1, q_v)
        q_labels, q_stride = cgutils.unpack_tuple(builder, q.shape, 2)
        chunk = as_intp(7, c_v)
        kernels = []
        for t in range(len(ty[2])):
            off = array((3, t), builder.extract_value(off_v, t))
            b = array((6, t), builder.extract_value(bufs_v, t))
            rows_per_chunk = cgutils.unpack_tuple(builder, b.shape, 3)[1]
            kernels.append(
                dict(
                    verts=array((2, t), builder.extract_value(verts_v, t)).data,
                    half=_is_half(ty[2][t]),
                    off=off.data,
                    nr=cgutils.unpack_tuple(builder, off.shape, 2)[1],
                    bary=array((4, t), builder.extract_value(bary_v, t)).data,
                    scales=array((5, t), builder.extract_value(scales_v, t)).data,
                    bufs=builder.gep(b.data, [builder.mul(builder.mul(chunk, rows_per_chunk), nl)]),
                )
            )
        if skip:
            state = array(13, args[13]).data
            state_half = _is_half(ty[13])
            margins = array(14, args[14]).data
            reset = isinstance(ty[15], types.NoneType)  # no list: every pixel, from q_state = 0
            listed = None if reset else array(15, args[15]).data
        lo_i, hi_i = as_intp(8, lo_v), as_intp(9, hi_v)
        # per pixel of a step: up to 4 accumulator vectors, promoted to registers by mem2reg
        # the prefetching build walks one pixel at a time: fewer live vectors, and the prefetches already overlap
        # the misses (measured on the high-M voc_mini photos: 1.03-1.07x over two interleaved pixels)
        per_step = 1 if prefetch else PIXELS_PER_STEP

        def unary_lanes(at, first, width):
            """Lanes first..first+width-1 of the energy row at neg_unary[at:]: float32 as stored, or int16 steps
            of UNARY_STEP with the padding lanes (labels >= L') set to PAD_ENERGY."""
            if not fixed_unary:
                return _vload(builder, nu.data, at, width)
            ivec = ir.VectorType(ir.IntType(16), width)
            raw = builder.load(builder.bitcast(builder.gep(nu.data, [at]), ivec.as_pointer()), align=2)
            step = _splat(builder, ir.Constant(ir.FloatType(), UNARY_STEP), width)
            x = builder.fmul(builder.sitofp(raw, _vec(width)), step)
            label = ir.Constant(ir.VectorType(intp, width), [first + m for m in range(width)])
            real = builder.icmp_signed("<", label, _splat(builder, q_labels, width))
            return builder.select(real, x, _splat(builder, ir.Constant(ir.FloatType(), PAD_ENERGY), width))

        def corners(k, pixel_ids, widths, body):
            """body(p, row start of the corner's vertex, {width: lanes of its barycentric weight}) for every
            corner r of every pixel p of pixel_ids, corner-major (the pixels' dependency chains interleave)."""
            firsts = [builder.mul(i, k["nr"]) for i in pixel_ids]
            with cgutils.for_range(builder, k["nr"]) as r:
                for p, first in enumerate(firsts):
                    e = builder.add(first, r.index)
                    w = _splats(builder, builder.load(builder.gep(k["bary"], [e])), widths)
                    body(p, _row_start(context, builder, k["off"], e), w)

        def factor(k, i, which, widths):
            """{width: lanes of kernel k's per-pixel factor scales[i, which]} (0: slice, 1: splat)."""
            at = builder.add(builder.mul(i, ir.Constant(intp, 2)), ir.Constant(intp, which))
            return _splats(builder, builder.load(builder.gep(k["scales"], [at])), widths)

        def pixel_at(position):
            """The pixel at a position of the walk: the position itself, or (skip builds with a list)
            pixels[position]."""
            if not skip or reset:
                return position
            at = builder.load(builder.gep(listed, [position]))
            return builder.sext(at, intp) if at.type.width < intp.width else at

        def fetch_ahead(positions, group):
            """Prefetch the vertex rows that the pixels PREFETCH_PIXELS positions after ``positions`` will gather and
            splat (worth it when the vertex arrays far exceed the caches)."""
            for position in positions:
                ahead = builder.add(position, ir.Constant(intp, PREFETCH_PIXELS))
                with builder.if_then(builder.icmp_signed("<", ahead, hi_i)):
                    j = pixel_at(ahead)
                    for k in kernels:
                        first = builder.mul(j, k["nr"])
                        with cgutils.for_range(builder, k["nr"]) as r:
                            base = _row_start(context, builder, k["off"], builder.add(first, r.index))
                            _prefetch_row_lines(builder, k["bufs"], base, _W * group, False)
                            _prefetch_row_lines(builder, k["verts"], base, _W * group, k["half"])

        def energies(pixel_ids, group):
            """Q rows (softmax of the energies, as the vectors of row_chunks of 8 * group labels) of one pixel or of
            several interleaved pixels, written to q_out if write_q, and each row's largest value."""
            chunks = row_chunks(_W * group)
            widths = [w for _, w in chunks]
            lanes = [ir.Constant(intp, first) for first, _ in chunks]
            width = ir.Constant(intp, _W * group)  # == L
            rows = [builder.mul(i, width) for i in pixel_ids]
            # per pixel: one accumulator per vector of the row, promoted to registers by mem2reg
            accs = [[cgutils.alloca_once(builder, _vec(w)) for w in widths] for _ in pixel_ids]
            extra = [[cgutils.alloca_once(builder, _vec(w)) for w in widths] for _ in pixel_ids]

            def clear(vectors):
                for acc in vectors:
                    for a, w in zip(acc, widths, strict=True):
                        builder.store(ir.Constant(_vec(w), [0.0] * w), a)

            clear(accs)
            with builder.if_then(gather_v):
                # kernel 0 sums into the energy accumulators, scaled once; later kernels into their own
                for t, k in enumerate(kernels):
                    sums = accs if t == 0 else extra
                    if t > 0:
                        clear(extra)

                    def gather(p, base, w, k=k, sums=sums):
                        for a, kb, n in zip(sums[p], lanes, widths, strict=True):
                            x = _vload_any(builder, k["verts"], builder.add(base, kb), k["half"], n)
                            builder.store(_vadd(builder, builder.load(a), builder.fmul(w[n], x, flags=_FAST)), a)

                    corners(k, pixel_ids, widths, gather)
                    for i, acc, more in zip(pixel_ids, accs, sums, strict=True):
                        f = factor(k, i, 0, widths)
                        for a, b, n in zip(acc, more, widths, strict=True):
                            scaled = builder.fmul(f[n], builder.load(b), flags=_FAST)
                            builder.store(scaled if t == 0 else _vadd(builder, builder.load(a), scaled), a)
            # the energy rows join last: their loads and conversions stay off the gathers' dependency chains
            for acc, row in zip(accs, rows, strict=True):
                for a, kb, (first, n) in zip(acc, lanes, chunks, strict=True):
                    builder.store(_vadd(builder, builder.load(a), unary_lanes(builder.add(row, kb), first, n)), a)
            ys, tops = zip(*[_softmax_registers(builder, [builder.load(a) for a in acc]) for acc in accs], strict=True)
            with builder.if_then(write_v):  # scattered scalar stores: (L', N) layout, no transpose after
                for i, y_row in zip(pixel_ids, ys, strict=True):
                    for (first, n), y in zip(chunks, y_row, strict=True):
                        for j in range(n):
                            k = ir.Constant(intp, first + j)
                            with builder.if_then(builder.icmp_signed("<", k, q_labels)):
                                builder.store(
                                    builder.extract_element(y, ir.Constant(ir.IntType(32), j)),
                                    builder.gep(q.data, [builder.add(builder.mul(k, q_stride), i)]),
                                )
            return ys, tops

        def splat_rows(pixel_ids, ys, group):
            """Splat the rows ys of pixel_ids (vectors of row_chunks) into every kernel's buffer."""
            lanes = [ir.Constant(intp, first) for first, _ in row_chunks(_W * group)]
            widths = [w for _, w in row_chunks(_W * group)]
            for k in kernels:
                outs = []
                for i, y_row in zip(pixel_ids, ys, strict=True):
                    f = factor(k, i, 1, widths)
                    outs.append([builder.fmul(f[y.type.count], y, flags=_FAST) for y in y_row])

                def scatter(p, base, w, k=k, outs=outs):
                    for y, kb in zip(outs[p], lanes, strict=True):
                        at = builder.add(base, kb)
                        n = y.type.count
                        old = _vload(builder, k["bufs"], at, n)
                        _vstore(builder, _vadd(builder, old, builder.fmul(w[n], y, flags=_FAST)), k["bufs"], at)

                corners(k, pixel_ids, widths, scatter)

        def update(positions, group):
            """The mean-field update of the pixels at one position or at several interleaved positions of the walk
            (rows of 8 * group labels)."""
            if prefetch:
                fetch_ahead(positions, group)
            pixel_ids = [pixel_at(x) for x in positions]
            ys, tops = energies(pixel_ids, group)
            with builder.if_then(scatter_v):
                if skip:
                    ys = [changes_of(i, y, top, group) for i, y, top in zip(pixel_ids, ys, tops, strict=True)]
                splat_rows(pixel_ids, ys, group)

        def changes_of(i, y_row, top, group):
            """Skip builds: the change of pixel i's Q (y_row, rounded to float16 when q_state holds float16) from
            q_state[i] (from 0 in a reset), which takes the new Q; margin[i] = min(top, 1 - top), top = max Q_il (=
            max over labels of min(Q_il, 1 - Q_il): any other Q_il is below both)."""
            row = builder.mul(i, ir.Constant(intp, _W * group))
            out = []
            for (first, n), y in zip(row_chunks(_W * group), y_row, strict=True):
                place = builder.add(row, ir.Constant(intp, first))
                if state_half:
                    y = builder.fpext(builder.fptrunc(y, ir.VectorType(ir.HalfType(), n)), _vec(n))
                out.append(y if reset else builder.fsub(y, _vload_any(builder, state, place, state_half, n)))
                _vstore_any(builder, y, state, place, state_half)
            rest = builder.fsub(ir.Constant(ir.FloatType(), 1.0), top)
            builder.store(builder.select(builder.fcmp_ordered("<", top, rest), top, rest), builder.gep(margins, [i]))
            return out

        def pixels(group):
            """Positions lo..hi-1 of the walk (pixels, or in skip builds listed pixels): per_step equal parts walked
            side by side (the pixels of a step are far apart, so their latency chains overlap and their splats
            rarely hit the same vertex), then the remainder one by one."""
            count = builder.sub(hi_i, lo_i)
            step = ir.Constant(intp, per_step)
            steps = builder.sdiv(count, step)
            with cgutils.for_range(builder, steps) as loop:
                i = builder.add(lo_i, loop.index)
                update(
                    [builder.add(i, builder.mul(steps, ir.Constant(intp, p))) for p in range(per_step)],
                    group,
                )
            with cgutils.for_range(builder, builder.srem(count, step)) as loop:
                update([builder.add(builder.add(lo_i, builder.mul(steps, step)), loop.index)], group)

        groups = builder.sdiv(nl, ir.Constant(intp, _W))
        for group in range(1, 5):
            with builder.if_then(builder.icmp_signed("==", groups, ir.Constant(intp, group))):
                pixels(group)
        return context.get_dummy_value()

    if skip:

        @intrinsic
        def meanfield_rows_skip(
            typingctx, neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q,
            q_state, margin, pixels,
        ):  # fmt: skip
            """meanfield_rows over a list of pixels, splatting the change of their Q: the updates of pixels[lo..hi-1]
            (or, if pixels is None, a reset: of pixels lo..hi-1), each as in meanfield_rows, except that when
            scatter the splat is Q_i - q_state[i] (Q_i in a reset) and q_state[i] = Q_i. The splat buffers then hold
            the splat of q_state: a pass may update any subset of the pixels. q_state: (N, L) float32, or uint16
            holding float16 (Q_i is then rounded to float16 first, so the buffers hold exactly the splat of q_state);
            margin: (N,) float32, set to max over labels of min(Q_il, 1 - Q_il) (how far Q_i is from certain;
            kernels.stale_pixels); pixels: int32 or int64 pixel indices, or None (a compile-time specialisation)."""
            args = (neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q)
            sig = types.void(*args, q_state, margin, pixels)
            return sig, codegen

        return meanfield_rows_skip

    @intrinsic
    def meanfield_rows(
        typingctx, neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q
    ):
        """Mean-field updates of pixels lo..hi-1 with the label row in registers (L <= MAX_REGISTER_LABELS).

        Per pixel i, with v = offsets[t][i, r] / L the vertex of corner r of kernel t: e = neg_unary[i] (+ sum
        over t of scales[t][i, 0] * sum_r bary[t][i, r] * verts[t][v] if gather); Q_i = softmax(e);
        q_out[:, i] = Q_i[:L'] if write_q; if scatter, bufs[t][chunk, v] += bary[t][i, r] * scales[t][i, 1] * Q_i
        for every t, r.
        neg_unary: (N, L) float32, or int16 in steps of UNARY_STEP (lanes L'.. then read as PAD_ENERGY); it joins
        each energy row after the gathers, off their dependency chains. q_out: (L', N) float32 label-major
        output, L' <= L. verts, offsets, bary, scales, bufs: equal-length tuples (one entry per kernel) of
        (M_t+1, L) float32 or uint16 (float16 values, converted on load), (N, R_t) int32 or int64 row starts
        (lattice.row_starts), (N, R_t) float32 barycentric weights, (N, 2) float32 per-pixel slice and splat
        factors and (C, M_t+1, L) float32.
        L % 8 == 0. Code is generated for each row width of 8, 16, 24 and 32 lanes (a compile-time pixel row
        stride; the row as the vectors of row_chunks); the kernel tuple is unrolled at compile time. The
        prefetching build fetches the vertex rows of later pixels ahead (for vertex arrays far larger than the
        caches).
        """
        sig = types.void(neg_unary, q_out, verts, offsets, bary, scales, bufs, chunk, lo, hi, gather, scatter, write_q)
        return sig, codegen

    return meanfield_rows


meanfield_rows = _meanfield_rows_intrinsic(False)
meanfield_rows_prefetch = _meanfield_rows_intrinsic(True)
meanfield_rows_skip = _meanfield_rows_intrinsic(False, skip=True)
meanfield_rows_skip_prefetch = _meanfield_rows_intrinsic(True, skip=True)


def _transpose8(builder, rows):
    """8x8 transpose of eight 8-lane vectors (row r -> lanes of output r) in three shuffle stages."""

    def shuffle(a, b, mask):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), _W), mask))

    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = [shuffle(rows[r], rows[r + 1], m) for r in range(0, 8, 2) for m in (lo, hi)]
    pair_lo, pair_hi = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    s = [shuffle(t[a], t[a + 2], m) for a in (0, 1, 4, 5) for m in (pair_lo, pair_hi)]
    half_lo, half_hi = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    return [shuffle(s[r], s[r + 4], half_lo) for r in range(4)] + [shuffle(s[r], s[r + 4], half_hi) for r in range(4)]


@intrinsic
def rows_from_columns(typingctx, dst, src, i0, scale, pad, log_floor):
    """dst[i0 + j, :] = scale * f(src[:, i0 + j]) for j < 8; label lanes beyond src's L are set to pad.

    f(v) = max(v, ENERGY_FLOOR / scale) (i.e. scale * v is kept above ENERGY_FLOOR), or log(max(v, log_floor))
    when log_floor > 0 (e.g. probabilities -> log-probabilities).
    src: (L, N) C-contiguous float32 (label-major); dst: (N, Lp) C-contiguous float32, Lp = L rounded up
    to a multiple of 8; i0 + 8 <= N. Eight pixels at a time through 8x8 register transposes.
    """
    sig = types.void(dst, src, i0, scale, pad, log_floor)

    def codegen(context, builder, signature, args):
        intp = context.get_value_type(types.intp)
        d_arr = context.make_array(signature.args[0])(context, builder, args[0])
        s_arr = context.make_array(signature.args[1])(context, builder, args[1])
        width = cgutils.unpack_tuple(builder, d_arr.shape, 2)[1]
        labels, n = cgutils.unpack_tuple(builder, s_arr.shape, 2)
        i0 = context.cast(builder, args[2], signature.args[2], types.intp)
        scale, pad, floor = (
            _as_float(context, builder, v, t) for v, t in zip(args[3:], signature.args[3:], strict=True)
        )
        take_log = builder.fcmp_ordered(">", floor, ir.Constant(ir.FloatType(), 0.0))
        with cgutils.for_range(builder, builder.sdiv(width, ir.Constant(intp, _W))) as g:
            k0 = builder.mul(g.index, ir.Constant(intp, _W))
            rows = []
            for r in range(_W):
                k = builder.add(k0, ir.Constant(intp, r))
                row = cgutils.alloca_once(builder, _VEC)
                builder.store(_splat(builder, pad), row)
                with builder.if_then(builder.icmp_signed("<", k, labels)):
                    v = _vload(builder, s_arr.data, builder.add(builder.mul(k, n), i0))
                    with builder.if_else(take_log) as (log_case, plain_case):
                        with log_case:
                            logged = _vlog_positive(builder, _vmax(builder, v, _splat(builder, floor)))
                            builder.store(builder.fmul(_splat(builder, scale), logged, flags=_FAST), row)
                        with plain_case:  # energies below ENERGY_FLOOR give probability 0 either way
                            scaled = builder.fmul(_splat(builder, scale), v, flags=_FAST)
                            builder.store(
                                _vmax(builder, scaled, _splat(builder, ir.Constant(ir.FloatType(), ENERGY_FLOOR))), row
                            )
                rows.append(builder.load(row))
            for j, col in enumerate(_transpose8(builder, rows)):
                at = builder.add(builder.mul(builder.add(i0, ir.Constant(intp, j)), width), k0)
                _vstore(builder, col, d_arr.data, at)
        return context.get_dummy_value()

    return sig, codegen
