"""Explicit 8-wide float32 SIMD row kernels for numba (LLVM IR intrinsics).

The lattice's inner loops combine a few rows of length L (labels, padded to a multiple of 8):
``acc += sum_r w_r V[o_r]`` (slice) and ``V[o_r] += w_r x`` (splat). Written as plain numba loops,
LLVM adds runtime alias checks to every short row loop and serialises the accumulation through
memory; these intrinsics keep the accumulators in vector registers and emit unaligned <8 x float>
loads/stores directly. All arrays must be C-contiguous float32 (int32 for offsets); no bounds checks.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_W = 8
_VEC = ir.VectorType(ir.FloatType(), _W)
_FAST = ("fast",)


def _data(context, builder, ty, val):
    return context.make_array(ty)(context, builder, val).data


def _splat(builder, scalar):
    vec = ir.Constant(_VEC, ir.Undefined)
    for k in range(_W):
        vec = builder.insert_element(vec, scalar, ir.Constant(ir.IntType(32), k))
    return vec


def _vload(builder, base, index):
    return builder.load(builder.bitcast(builder.gep(base, [index]), _VEC.as_pointer()), align=4)


def _vstore(builder, value, base, index):
    builder.store(value, builder.bitcast(builder.gep(base, [index]), _VEC.as_pointer()), align=4)


def _as_float(context, builder, val, ty):
    return val if ty == types.float32 else context.cast(builder, val, ty, types.float32)


def _gather_group(context, builder, acc_p, verts_p, off_p, w_p, row, nr, nl, kb0, group):
    """acc[kb0 : kb0 + 8 * group] += sum_r w_r verts[o_r, same lanes], ``group`` independent register chains."""
    intp = context.get_value_type(types.intp)
    accs = [cgutils.alloca_once(builder, _VEC) for _ in range(group)]  # promoted to registers by mem2reg
    lanes = [builder.add(kb0, ir.Constant(intp, _W * j)) for j in range(group)]
    for a, kb in zip(accs, lanes):
        builder.store(_vload(builder, acc_p, kb), a)
    with cgutils.for_range(builder, nr) as rr:
        e = builder.add(row, rr.index)
        o = builder.sext(builder.load(builder.gep(off_p, [e])), intp)
        w = _splat(builder, builder.load(builder.gep(w_p, [e])))
        base = builder.mul(o, nl)
        for a, kb in zip(accs, lanes):
            x = _vload(builder, verts_p, builder.add(base, kb))
            builder.store(builder.fadd(builder.load(a), builder.fmul(w, x, flags=_FAST), flags=_FAST), a)
    for a, kb in zip(accs, lanes):
        _vstore(builder, builder.load(a), acc_p, kb)


@intrinsic
def gather_rows(typingctx, acc, verts, offset, weight, i):
    """acc[:L] += sum_r weight[i, r] * verts[offset[i, r], :L] for r < offset.shape[1].

    acc: (L,) float32; verts: (M+1, L) float32; offset: (N, R) int32; weight: (N, R) float32; L % 8 == 0.
    Lanes are processed in groups of up to 4 x 8 with one register accumulator each, so the sum over r
    runs as independent FMA chains.
    """
    sig = types.void(acc, verts, offset, weight, i)

    def codegen(context, builder, signature, args):
        acc_v, verts_v, off_v, w_v, i_v = args
        intp = context.get_value_type(types.intp)
        acc_p = _data(context, builder, signature.args[0], acc_v)
        verts_p = _data(context, builder, signature.args[1], verts_v)
        off_p = _data(context, builder, signature.args[2], off_v)
        w_p = _data(context, builder, signature.args[3], w_v)
        nl = cgutils.unpack_tuple(builder, context.make_array(signature.args[1])(context, builder, verts_v).shape, 2)[1]
        nr = cgutils.unpack_tuple(builder, context.make_array(signature.args[2])(context, builder, off_v).shape, 2)[1]
        row = builder.mul(context.cast(builder, i_v, signature.args[4], types.intp), nr)
        nchunks = builder.sdiv(nl, ir.Constant(intp, _W))
        full = builder.sdiv(nchunks, ir.Constant(intp, 4))
        with cgutils.for_range(builder, full) as g:
            kb0 = builder.mul(g.index, ir.Constant(intp, 4 * _W))
            _gather_group(context, builder, acc_p, verts_p, off_p, w_p, row, nr, nl, kb0, 4)
        rest = builder.srem(nchunks, ir.Constant(intp, 4))
        kb0 = builder.mul(full, ir.Constant(intp, 4 * _W))
        for group in (1, 2, 3):
            with builder.if_then(builder.icmp_signed("==", rest, ir.Constant(intp, group))):
                _gather_group(context, builder, acc_p, verts_p, off_p, w_p, row, nr, nl, kb0, group)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def scatter_rows(typingctx, bufs, chunk, x, offset, weight, i):
    """bufs[chunk, offset[i, r], :L] += weight[i, r] * x[:L] for r < offset.shape[1].

    bufs: (C, M+1, L) float32; x: (L,) float32; offset: (N, R) int32; weight: (N, R) float32; L % 8 == 0.
    """
    sig = types.void(bufs, chunk, x, offset, weight, i)

    def codegen(context, builder, signature, args):
        b_v, c_v, x_v, off_v, w_v, i_v = args
        intp = context.get_value_type(types.intp)
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
        nchunks = builder.sdiv(nl, ir.Constant(intp, _W))
        with cgutils.for_range(builder, nr) as rr:
            e = builder.add(row, rr.index)
            o = builder.sext(builder.load(builder.gep(off_p, [e])), intp)
            w = _splat(builder, builder.load(builder.gep(w_p, [e])))
            rowbase = builder.add(base, builder.mul(o, nl))
            with cgutils.for_range(builder, nchunks) as ch:
                kb = builder.mul(ch.index, ir.Constant(intp, _W))
                at = builder.add(rowbase, kb)
                xv = _vload(builder, x_p, kb)
                _vstore(builder, builder.fadd(_vload(builder, b_p, at), builder.fmul(w, xv, flags=_FAST), flags=_FAST),
                        b_p, at)
        return context.get_dummy_value()

    return sig, codegen
