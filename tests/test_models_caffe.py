"""Caffe .caffemodel wire format and DeepLab layer mapping (width-reduced nets with the released layer names)."""

import numpy as np
import pytest
import torch

from deeplab.cli import main as cli_main
from deeplab.errors import InputError
from deeplab.models import load_model
from deeplab.models.caffe_import import CaffeNaming, import_caffemodel, model_to_net, net_to_model
from deeplab.models.caffe_proto import (
    Blob,
    Layer,
    Net,
    encode_blob,
    encode_net,
    encode_varint,
    parse_net,
    read_caffemodel,
    write_caffemodel,
)
from deeplab.preprocess import CAFFE_MEAN_BGR

WIDTH = 1 / 16  # conv channels 4, 8, 16, 32, 32; LargeFOV fc6/fc7 64; MSc MLPs 8


def conv_layer(name, cout, cin, k, rng, v1, legacy):
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    return Layer(name, "Convolution", [Blob(w, legacy), Blob(b.reshape(1, 1, 1, -1) if legacy else b, legacy)], v1)


def deeplab_net(rng, *, fc8="fc8_voc12", classes=21, msc=False, v1=True, legacy=True, extras=False) -> Net:
    """A width-1/16 DeepLab-LargeFOV(-MSc) caffemodel with the released layer names, written out by hand."""
    chans = [
        ("conv1_1", 4, 3),
        ("conv1_2", 4, 4),
        ("conv2_1", 8, 4),
        ("conv2_2", 8, 8),
        ("conv3_1", 16, 8),
        ("conv3_2", 16, 16),
        ("conv3_3", 16, 16),
        ("conv4_1", 32, 16),
        ("conv4_2", 32, 32),
        ("conv4_3", 32, 32),
        ("conv5_1", 32, 32),
        ("conv5_2", 32, 32),
        ("conv5_3", 32, 32),
    ]
    layers = []
    if extras:  # blob-less layers as in a real net: must be skipped
        layers.append(Layer("data", "ImageData", [], v1))
    for name, cout, cin in chans:
        layers.append(conv_layer(name, cout, cin, 3, rng, v1, legacy))
        if extras:
            layers.append(Layer(f"relu{name[4:]}", "ReLU", [], v1))
    layers += [
        conv_layer("fc6", 64, 32, 3, rng, v1, legacy),
        conv_layer("fc7", 64, 64, 1, rng, v1, legacy),
        conv_layer(fc8, classes, 64, 1, rng, v1, legacy),
    ]
    if msc:
        for tap, cin in [("data", 3), ("pool1", 4), ("pool2", 8), ("pool3", 16), ("pool4", 32)]:
            layers += [
                conv_layer(f"{tap}_conv", 8, cin, 3, rng, v1, legacy),
                conv_layer(f"{tap}_fc", 8, 8, 1, rng, v1, legacy),
                conv_layer(f"{tap}_ms", classes, 8, 1, rng, v1, legacy),
            ]
    return Net("DeepLab-LargeFOV", layers)


def test_varint_and_blob_bytes_match_protobuf_spec():
    assert encode_varint(1) == b"\x01" and encode_varint(300) == b"\xac\x02"  # protobuf encoding guide example
    blob = encode_blob(Blob(np.array([1.0, -2.0], np.float32)))
    # data = 5 packed (tag 0x2a, 8 bytes), shape = 7 {dim = 1 packed [2]}
    assert blob == b"\x2a\x08" + np.array([1.0, -2.0], "<f4").tobytes() + b"\x3a\x03\x0a\x01\x02"


def google_messages():
    """NetParameter / V1LayerParameter / LayerParameter / BlobProto built at run time with Google's protobuf."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="mini_caffe.proto", package="mini")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, tname, packed in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if tname:
                f.type_name = tname
            if packed:
                f.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
    msg(
        "BlobProto",
        [
            ("num", 1, F.TYPE_INT32, opt, None, False),
            ("channels", 2, F.TYPE_INT32, opt, None, False),
            ("height", 3, F.TYPE_INT32, opt, None, False),
            ("width", 4, F.TYPE_INT32, opt, None, False),
            ("data", 5, F.TYPE_FLOAT, rep, None, True),
            ("shape", 7, F.TYPE_MESSAGE, opt, ".mini.BlobShape", False),
            ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
        ],
    )
    msg(
        "LayerParameter",
        [
            ("name", 1, F.TYPE_STRING, opt, None, False),
            ("type", 2, F.TYPE_STRING, opt, None, False),
            ("bottom", 3, F.TYPE_STRING, rep, None, False),
            ("blobs", 7, F.TYPE_MESSAGE, rep, ".mini.BlobProto", False),
        ],
    )
    msg(
        "V1LayerParameter",
        [
            ("name", 4, F.TYPE_STRING, opt, None, False),
            ("type", 5, F.TYPE_INT32, opt, None, False),
            ("blobs", 6, F.TYPE_MESSAGE, rep, ".mini.BlobProto", False),
        ],
    )
    msg(
        "NetParameter",
        [
            ("name", 1, F.TYPE_STRING, opt, None, False),
            ("layers", 2, F.TYPE_MESSAGE, rep, ".mini.V1LayerParameter", False),
            ("layer", 100, F.TYPE_MESSAGE, rep, ".mini.LayerParameter", False),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mini.{name}"))


def test_writer_and_reader_agree_with_google_protobuf():
    Msg = google_messages()
    rng = np.random.default_rng(0)
    ours = Net(
        "x",
        [
            conv_layer("conv1_1", 2, 3, 3, rng, v1=True, legacy=True),
            conv_layer("fc8_voc12", 5, 2, 1, rng, v1=False, legacy=False),
        ],
    )
    theirs = Msg("NetParameter")()
    theirs.ParseFromString(encode_net(ours))
    assert theirs.name == "x" and theirs.layers[0].name == "conv1_1" and theirs.layers[0].type == 4  # CONVOLUTION
    b0 = theirs.layers[0].blobs[0]
    assert (b0.num, b0.channels, b0.height, b0.width) == (2, 3, 3, 3)
    np.testing.assert_array_equal(np.array(b0.data, np.float32), ours.layers[0].blobs[0].data.ravel())
    v2 = theirs.layer[0]
    assert v2.name == "fc8_voc12" and v2.type == "Convolution" and list(v2.blobs[1].shape.dim) == [5]
    # Google-written bytes (with a field we skip: bottom, and double data) read back by our parser
    g = Msg("NetParameter")(name="g")
    lay = g.layer.add(name="fc7", type="Convolution", bottom=["fc6"])
    blob = lay.blobs.add(double_data=[0.5, 1.5, 2.5])
    blob.shape.dim.extend([3, 1])
    net = parse_net(g.SerializeToString())
    assert net.name == "g" and net.layers[0].name == "fc7" and not net.layers[0].v1
    assert net.layers[0].blobs[0].data.dtype == np.float64 and net.layers[0].blobs[0].data.tolist() == [
        [0.5],
        [1.5],
        [2.5],
    ]


@pytest.mark.parametrize("v1,legacy,fc8", [(True, True, "fc8_voc12"), (False, False, "fc8_camvid")])
def test_caffemodel_roundtrip_is_byte_exact(tmp_path, v1, legacy, fc8):
    net = deeplab_net(np.random.default_rng(1), fc8=fc8, classes=11, v1=v1, legacy=legacy)
    path = write_caffemodel(tmp_path / "in.caffemodel", net)
    model, naming = import_caffemodel(path, "deeplab-largefov")
    assert naming == CaffeNaming(fc8, "", v1, legacy)
    assert model.num_classes == 11 and model.backbone.conv1_1.conv.out_channels == 4
    assert torch.equal(model.head.fc6.conv.weight, torch.from_numpy(net.layers[13].blobs[0].data))
    assert torch.equal(model.classifier.bias, torch.from_numpy(net.layers[15].blobs[1].data.ravel()))
    again = model_to_net(model, naming, name=net.name)
    assert encode_net(again) == path.read_bytes()


def test_msc_net_roundtrip_and_forward_uses_branches(tmp_path):
    net = deeplab_net(np.random.default_rng(2), msc=True, v1=True, legacy=True)
    path = write_caffemodel(tmp_path / "msc.caffemodel", net)
    with pytest.raises(InputError, match="MSc"):
        import_caffemodel(path, "deeplab-largefov")
    model, naming = import_caffemodel(path, "deeplab-largefov-msc")
    assert encode_net(model_to_net(model, naming, name=net.name)) == path.read_bytes()
    score = {layer.name: layer for layer in net.layers}["pool3_ms"]
    assert torch.equal(model.branches["pool3"].score.weight, torch.from_numpy(score.blobs[0].data))
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        full = model(x)
        model.branches["pool3"].score.bias.add_(1.0)
        assert torch.allclose(model(x), full + 1.0, atol=1e-5)  # branch scores are summed into fc8's


def test_blobless_layers_are_skipped_and_mismatches_reported(tmp_path):
    rng = np.random.default_rng(3)
    net = deeplab_net(rng, extras=True)
    model, _ = net_to_model(parse_net(encode_net(net)), "deeplab-largefov")
    assert model.num_classes == 21
    bad = deeplab_net(rng)
    bad.layers.append(conv_layer("conv6", 2, 2, 1, rng, True, True))
    with pytest.raises(InputError, match="unexpected.*conv6"):
        net_to_model(bad, "deeplab-largefov")
    with pytest.raises(InputError, match="fc6 blob.*wrong --arch"):
        net_to_model(deeplab_net(rng), "deeplab")  # 3x3 fc6 weights into a 4x4 head
    trunc = tmp_path / "trunc.caffemodel"
    trunc.write_bytes(encode_net(deeplab_net(rng))[:-7])
    with pytest.raises(InputError, match="trunc.caffemodel"):
        read_caffemodel(trunc)
    with pytest.raises(InputError, match="not found"):
        read_caffemodel(tmp_path / "none.caffemodel")


def test_convert_cli_writes_a_usable_checkpoint(tmp_path):
    net = deeplab_net(np.random.default_rng(4))
    src = write_caffemodel(tmp_path / "voc.caffemodel", net)
    out = tmp_path / "model.pt"
    assert cli_main(["convert", str(src), "-o", str(out), "--arch", "deeplab-largefov", "--classes", "voc"]) == 0
    loaded = load_model(out)
    assert loaded.arch == "deeplab-largefov" and loaded.classes[15] == "person" and len(loaded.classes) == 21
    assert loaded.preprocess.bgr and loaded.preprocess.mean == CAFFE_MEAN_BGR
    assert loaded.meta["extra"]["caffe"]["fc8"] == "fc8_voc12"
    assert loaded.palette.shape == (21, 3) and loaded.palette[1].tolist() == [128, 0, 0]
    assert cli_main(["convert", str(src), "-o", str(out), "--arch", "deeplab-largefov", "--classes", "camvid"]) == 2
    assert cli_main(["convert", str(tmp_path / "missing.caffemodel"), "-o", str(out)]) == 2
