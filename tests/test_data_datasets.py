"""Data sets in their on-disk formats: real VOC/CamVid files and small SBD/folder sets built here."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from deeplab.data import build_dataset
from deeplab.data.camvid import CAMVID_CLASSES
from deeplab.data.palette import save_label_png, voc_palette
from deeplab.data.sbd import load_sbd_mat
from deeplab.errors import InputError


def test_voc_mini_real_files(shared_data):
    root = shared_data / "voc_mini"
    val = build_dataset("voc", root, "val")
    train = build_dataset("voc", root / "VOC2012", "train")
    assert (len(val), len(train)) == (9, 4)
    assert val.names[0] == "2007_000033" and val.ids == val.names
    assert len(val.classes) == 21 and val.classes[15] == "person"
    assert val.palette.tolist()[:3] == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    image, label = val[0]
    assert image.dtype == np.uint8 and image.shape == (366, 500, 3)
    raw = np.array(Image.open(root / "VOC2012/SegmentationClass/2007_000033.png"))
    np.testing.assert_array_equal(label, raw)
    assert set(np.unique(label)) == {0, 1, 255}  # aeroplane with the void boundary band
    assert val.boundary == "void"


def test_camvid_real_files(shared_data):
    root = shared_data / "camvid"
    sizes = {s: len(build_dataset("camvid", root, s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 367, "val": 101, "test": 233}
    both = build_dataset("camvid", root, "train+val")
    assert len(both) == 468 and both.names[367] == build_dataset("camvid", root, "val").names[0]
    ds = build_dataset("camvid", root, "train")
    assert ds.names[0] == "0001TP_006690"
    assert ds.classes == CAMVID_CLASSES and len(ds.classes) == 11
    assert ds.palette[ds.classes.index("Road")].tolist() == [128, 64, 128]
    assert ds.palette[ds.classes.index("Bicyclist")].tolist() == [0, 128, 192]
    image, label = ds[0]
    assert image.shape == (360, 480, 3) and label.shape == (360, 480)
    raw = np.array(Image.open(root / "trainannot/0001TP_006690.png"))
    assert (raw == 11).any()
    np.testing.assert_array_equal(label == 255, raw == 11)  # void -> ignore
    np.testing.assert_array_equal(label[raw != 11], raw[raw != 11])
    assert label[label != 255].max() <= 10


def _save_mat(path: Path, seg: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    boundaries = np.empty((20, 1), dtype=object)  # SBD stores one sparse edge map per class here
    boundaries[:, 0] = [np.zeros(seg.shape, bool)] * 20
    gtcls = {
        "Segmentation": seg.astype(np.uint8),
        "Boundaries": boundaries,
        "CategoriesPresent": np.unique(seg[seg > 0]).astype(np.uint8),
    }
    scipy.io.savemat(str(path), {"GTcls": gtcls})


def _fake_voc_sbd(tmp_path: Path):
    """VOC: train a,b / val c,d ; SBD: train b,c,e / val f. Labels encode the id: a->1, b->2, ... f->6."""
    rng = np.random.default_rng(0)
    voc, sbd = tmp_path / "VOCdevkit" / "VOC2012", tmp_path / "benchmark_RELEASE" / "dataset"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\nb\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("c\nd\n")
    sbd.mkdir(parents=True)
    (sbd / "train.txt").write_text("b\nc\ne\n")
    (sbd / "val.txt").write_text("f\n")
    for k, n in enumerate("abcdef", 1):
        img = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        (voc / "JPEGImages").mkdir(exist_ok=True)
        Image.fromarray(img).save(voc / "JPEGImages" / f"{n}.jpg")
        if n in "abcd":
            lab = np.full((6, 8), k, np.uint8)
            lab[0] = 255
            save_label_png(voc / "SegmentationClass" / f"{n}.png", lab)
        if n in "bcef":
            _save_mat(sbd / "cls" / f"{n}.mat", np.full((6, 8), 10 + k))
            (sbd / "img").mkdir(exist_ok=True)
            Image.fromarray(img).save(sbd / "img" / f"{n}.jpg")
    return voc, sbd


def test_sbd_mat_and_train_aug_merge(tmp_path):
    _voc, sbd = _fake_voc_sbd(tmp_path)
    seg = np.arange(12, dtype=np.uint8).reshape(3, 4) % 21
    _save_mat(tmp_path / "x.mat", seg)
    np.testing.assert_array_equal(load_sbd_mat(tmp_path / "x.mat"), seg)

    s = build_dataset("sbd", tmp_path / "benchmark_RELEASE", "train")
    assert s.names == ["b", "c", "e"] and s.boundary == "labels"
    assert np.unique(s[2][1]).tolist() == [15]
    assert build_dataset("sbd", sbd, "trainval").names == ["b", "c", "e", "f"]

    aug = build_dataset("voc", tmp_path / "VOCdevkit", "train_aug", sbd_root=sbd)
    assert aug.names == ["a", "b", "e", "f"]  # (SBD train+val ∪ VOC train) − VOC val
    first = {n: aug[i][1] for i, n in enumerate(aug.names)}
    assert sorted(np.unique(first["a"]).tolist()) == [1, 255]  # VOC's own label (with void band)
    assert sorted(np.unique(first["b"]).tolist()) == [2, 255]  # VOC label preferred over SBD's
    assert np.unique(first["e"]).tolist() == [15] and np.unique(first["f"]).tolist() == [16]
    # the SBD folder is found beside the VOC folder when not given
    assert build_dataset("voc", tmp_path / "VOCdevkit", "train_aug").names == aug.names


def test_folder_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "classes.txt").write_text("ground 10 20 30\nthing\n\n")
    for n in ("p", "q", "r"):
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "images" / f"{n}.png")
    for n in ("p", "q"):
        save_label_png(tmp_path / "labels" / f"{n}.png", np.array([[0, 1, 255, 1, 0]] * 4))
    ds = build_dataset("folder", tmp_path, "all")
    assert ds.names == ["p", "q"] and ds.classes == ["ground", "thing"]
    assert ds.palette.tolist() == [[10, 20, 30], voc_palette(2)[1].tolist()]
    assert ds[1][1].tolist()[0] == [0, 1, 255, 1, 0]
    (tmp_path / "val.txt").write_text("q\n")
    assert build_dataset("folder", tmp_path, "val").names == ["q"]
    with pytest.raises(InputError, match="test.txt"):
        build_dataset("folder", tmp_path, "test")
    (tmp_path / "classes.txt").write_text("ground\n")  # label 1 is now out of range
    with pytest.raises(InputError, match=r"p\.png.*label values \[1\]"):
        build_dataset("folder", tmp_path, "all")[0]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_missing_and_corrupt_files_name_the_file(voc_tiny, tmp_path):
    voc = tmp_path / "VOC2012"
    shutil.copytree(voc_tiny, voc)
    ds = build_dataset("voc", voc, "val")
    _truncate(voc / "JPEGImages" / f"{ds.names[0]}.jpg")
    with pytest.raises(InputError, match=f"{ds.names[0]}.jpg"):
        ds[0]
    _truncate(voc / "SegmentationClass" / f"{ds.names[1]}.png")
    with pytest.raises(InputError, match=f"{ds.names[1]}.png"):
        ds[1]
    (voc / "JPEGImages" / f"{ds.names[2]}.jpg").unlink()
    with pytest.raises(InputError, match=f"not found.*{ds.names[2]}.jpg"):
        ds[2]
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    with pytest.raises(InputError, match="bad.mat"):
        load_sbd_mat(tmp_path / "bad.mat")
    with pytest.raises(InputError, match="trainval.txt"):
        build_dataset("voc", voc, "trainval")
    with pytest.raises(InputError, match="unknown data set 'kitti'"):
        build_dataset("kitti", voc, "val")
    with pytest.raises(InputError, match="SBD"):
        build_dataset("voc", voc, "train_aug")
    with pytest.raises(InputError, match="nowhere"):
        build_dataset("camvid", tmp_path / "nowhere", "test")


def test_splits_join_and_slice_for_every_format(camvid_tiny, voc_tiny):
    joined = build_dataset("camvid", camvid_tiny, "train+val")
    assert len(joined) == 6 and joined.names[:4] == build_dataset("camvid", camvid_tiny, "train").names
    held_in = build_dataset("camvid", camvid_tiny, "train+val[1:]")
    held_out = build_dataset("camvid", camvid_tiny, "val[:1]")
    assert len(held_in) == 5 and len(held_out) == 1 and held_out.names[0] not in held_in.names
    image, label = held_in[4]
    assert image.shape[:2] == label.shape
    voc = build_dataset("voc", voc_tiny, "val[-2:]+train")
    assert len(voc) == 3 and voc.names[-1] == build_dataset("voc", voc_tiny, "train").names[0]
    with pytest.raises(InputError, match="selects no images"):
        build_dataset("camvid", camvid_tiny, "val[5:]")
    with pytest.raises(InputError, match="parts like"):
        build_dataset("camvid", camvid_tiny, "val[1]")
