"""A minimal, dependency-free reader/writer for Caffe .caffemodel files (binary protobuf NetParameter).

Only the fields that carry weights are modelled (caffe.proto field numbers):
  NetParameter:      name = 1, layers = 2 (V1LayerParameter), layer = 100 (LayerParameter)
  LayerParameter:    name = 1, type = 2 (string), blobs = 7
  V1LayerParameter:  name = 4, type = 5 (enum LayerType), blobs = 6
  BlobProto:         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape), data = 5 (packed float),
                     shape = 7 (BlobShape: dim = 1, packed int64), double_data = 8 (packed double)
Everything else (bottoms, tops, layer parameters, diffs) is skipped on reading and not written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeplab.errors import InputError

VARINT, I64, LEN, I32 = 0, 1, 2, 5

# V1LayerParameter.LayerType values of caffe.proto for the layer kinds that occur in DeepLab nets.
V1_LAYER_TYPES: dict[int, str] = {
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    12: "ImageData",
    14: "InnerProduct",
    15: "LRN",
    17: "Pooling",
    18: "ReLU",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    25: "Eltwise",
    39: "Deconvolution",
}
V1_TYPE_IDS: dict[str, int] = {v: k for k, v in V1_LAYER_TYPES.items()}


class ProtoError(InputError):
    """Malformed protobuf bytes."""


# ----------------------------------------------------------------------------------------------- wire format
def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at buf[pos:]. Returns (value, next position)."""
    value = shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def iter_fields(buf: memoryview):
    """Yield (field number, wire type, value) over one message; value: int (VARINT/I64/I32) or memoryview (LEN)."""
    pos, n = 0, len(buf)
    value: int | memoryview
    while pos < n:
        key, pos = read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ProtoError(f"invalid field number 0 at byte {pos}")
        if wt == VARINT:
            value, pos = read_varint(buf, pos)
        elif wt == LEN:
            size, pos = read_varint(buf, pos)
            if pos + size > n:
                raise ProtoError(f"field {num}: length {size} runs past the end of the message")
            value, pos = buf[pos : pos + size], pos + size
        elif wt == I64:
            if pos + 8 > n:
                raise ProtoError("truncated 64-bit field")
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wt == I32:
            if pos + 4 > n:
                raise ProtoError("truncated 32-bit field")
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtoError(f"unsupported wire type {wt} (field {num})")
        yield num, wt, value


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are 10-byte two's complement varints
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_key(num: int, wt: int) -> bytes:
    return encode_varint((num << 3) | wt)


def encode_len(num: int, payload: bytes) -> bytes:
    return encode_key(num, LEN) + encode_varint(len(payload)) + payload


# ----------------------------------------------------------------------------------------------- messages
@dataclass
class Blob:
    """One parameter blob. data: float32 or float64 array of the blob's shape; legacy: shape stored as
    num/channels/height/width (4-D) rather than BlobShape."""

    data: np.ndarray
    legacy: bool = False


@dataclass
class Layer:
    """name, type (string; V1 enum values are mapped through V1_LAYER_TYPES), blobs, v1 (a `layers` entry)."""

    name: str
    type: str
    blobs: list[Blob] = field(default_factory=list)
    v1: bool = False


@dataclass
class Net:
    name: str = ""
    layers: list[Layer] = field(default_factory=list)


def _floats(wt: int, value, dtype: str) -> np.ndarray:
    if wt == LEN:
        if len(value) % np.dtype(dtype).itemsize:
            raise ProtoError(f"packed {dtype} field of {len(value)} bytes")
        return np.frombuffer(value, dtype=dtype)
    width = 4 if dtype == "<f4" else 8
    return np.frombuffer(value.to_bytes(width, "little"), dtype=dtype)


def _ints(wt: int, value) -> list[int]:
    if wt != LEN:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = read_varint(value, pos)
        out.append(v)
    return out


def parse_blob(buf: memoryview) -> Blob:
    legacy_dims = {1: 0, 2: 0, 3: 0, 4: 0}  # caffe.proto defaults
    has_legacy = False
    dims: list[int] | None = None
    singles: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    for num, wt, value in iter_fields(buf):
        if num in legacy_dims and wt == VARINT:
            legacy_dims[num] = value
            has_legacy = True
        elif num == 5:
            singles.append(_floats(wt, value, "<f4"))
        elif num == 8:
            doubles.append(_floats(wt, value, "<f8"))
        elif num == 7 and wt == LEN:
            dims = [d for n2, w2, v2 in iter_fields(value) if n2 == 1 for d in _ints(w2, v2)]
    data = np.concatenate(doubles) if doubles else (np.concatenate(singles) if singles else np.zeros(0, np.float32))
    if dims is not None:
        shape, legacy = tuple(dims), False
    elif has_legacy:
        shape, legacy = tuple(legacy_dims[k] for k in (1, 2, 3, 4)), True
    else:
        shape, legacy = (data.size,), False
    if data.size != int(np.prod(shape)):
        raise ProtoError(f"blob of shape {shape} holds {data.size} values")
    return Blob(data.reshape(shape).copy(), legacy)


def parse_layer(buf: memoryview, v1: bool) -> Layer:
    name_f, type_f, blob_f = (4, 5, 6) if v1 else (1, 2, 7)
    name, type_, blobs = "", "", []
    for num, wt, value in iter_fields(buf):
        if num == name_f and wt == LEN:
            name = bytes(value).decode("utf-8", "replace")
        elif num == type_f and wt == (VARINT if v1 else LEN):
            type_ = V1_LAYER_TYPES.get(value, f"V1Type{value}") if v1 else bytes(value).decode("utf-8", "replace")
        elif num == blob_f and wt == LEN:
            blobs.append(parse_blob(value))
    return Layer(name, type_, blobs, v1)


def parse_net(data: bytes) -> Net:
    """Decode NetParameter bytes (both V1 `layers` and V2 `layer` entries, in file order)."""
    net = Net()
    for num, wt, value in iter_fields(memoryview(data)):
        if num == 1 and wt == LEN:
            net.name = bytes(value).decode("utf-8", "replace")
        elif num in (2, 100) and wt == LEN:
            net.layers.append(parse_layer(value, v1=(num == 2)))
    return net


def encode_blob(blob: Blob) -> bytes:
    data = np.asarray(blob.data)
    if blob.legacy:
        if data.ndim > 4:
            raise InputError(f"legacy blob shape must be <= 4-D, got {data.shape}")
        dims = (1,) * (4 - data.ndim) + tuple(data.shape)
        out = b"".join(encode_key(i + 1, VARINT) + encode_varint(d) for i, d in enumerate(dims))
    else:
        out = b""
    if data.dtype == np.float64:
        out += encode_len(8, data.astype("<f8").tobytes())
    else:
        out += encode_len(5, data.astype("<f4").tobytes())
    if not blob.legacy:
        packed = b"".join(encode_varint(int(d)) for d in data.shape)
        out += encode_len(7, encode_len(1, packed))
    return out


def encode_layer(layer: Layer) -> bytes:
    if layer.v1:
        if layer.type not in V1_TYPE_IDS:
            raise InputError(f"layer {layer.name}: no V1 enum value known for type {layer.type!r}")
        head = encode_len(4, layer.name.encode()) + encode_key(5, VARINT) + encode_varint(V1_TYPE_IDS[layer.type])
        return head + b"".join(encode_len(6, encode_blob(b)) for b in layer.blobs)
    head = encode_len(1, layer.name.encode()) + encode_len(2, layer.type.encode())
    return head + b"".join(encode_len(7, encode_blob(b)) for b in layer.blobs)


def encode_net(net: Net) -> bytes:
    parts = [encode_len(1, net.name.encode())] if net.name else []
    parts += [encode_len(2 if layer.v1 else 100, encode_layer(layer)) for layer in net.layers]
    return b"".join(parts)


def read_caffemodel(path: str | os.PathLike) -> Net:
    """Read a .caffemodel file (InputError naming it if missing or malformed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"caffemodel not found: {path}")
    try:
        return parse_net(path.read_bytes())
    except ProtoError as e:
        raise InputError(f"{path}: not a valid caffemodel ({e})") from e


def write_caffemodel(path: str | os.PathLike, net: Net) -> Path:
    """Write net as a .caffemodel atomically."""
    from deeplab.io import atomic_write

    payload = encode_net(net)
    return atomic_write(path, lambda f: f.write(payload))
