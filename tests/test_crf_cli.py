"""`deeplab crf`: refine real coarse masks (VOC label PNG, classic colour annotation, probabilities)."""

import numpy as np
from PIL import Image

from deeplab.cli import main
from deeplab.crf.synthetic import coarse_probs
from deeplab.data.palette import load_label_png


def _voc(root, index=0):
    """(image, label PNG) paths of the VOC fixture: val photos 0-1, then the train photo."""
    lists = root / "ImageSets/Segmentation"
    name = ((lists / "val.txt").read_text().split() + (lists / "train.txt").read_text().split())[index]
    return root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"


def test_cli_refines_probabilities(voc_tiny, tmp_path):
    image, mask = _voc(voc_tiny, 1)
    gt = np.array(Image.open(mask))
    probs = coarse_probs(gt, 21, seed=1)
    np.save(tmp_path / "p.npy", probs)
    out, over, q = tmp_path / "out.png", tmp_path / "over.jpg", tmp_path / "q.npy"
    assert (
        main(
            [
                "crf",
                str(image),
                "--probs",
                str(tmp_path / "p.npy"),
                "-o",
                str(out),
                "--overlay",
                str(over),
                "--save-probs",
                str(q),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    labels = load_label_png(out)
    assert Image.open(out).mode == "P" and labels.shape == gt.shape
    assert np.array_equal(labels, np.load(q).argmax(0))
    assert Image.open(over).size == (gt.shape[1], gt.shape[0])
    valid = gt != 255
    assert (labels == gt)[valid].mean() > (probs.argmax(0) == gt)[valid].mean()


def test_cli_label_png_keeps_label_values(voc_tiny, tmp_path):
    """A VOC mask (values 0..20, 255 void = unknown) coarsened by x4 nearest-neighbour (x10 at the photo's full
    size), then refined: output keeps the label values, fills the unknown pixels and stays close to the truth."""
    image, mask = _voc(voc_tiny, 1)
    gt = np.array(Image.open(mask))
    h, w = gt.shape
    rows, cols = np.minimum(np.arange(h) // 4 * 4 + 2, h - 1), np.minimum(np.arange(w) // 4 * 4 + 2, w - 1)
    coarse = gt[rows][:, cols]
    Image.fromarray(coarse, mode="L").save(tmp_path / "coarse.png")
    out = tmp_path / "out.png"
    assert main(["crf", str(image), "--labels", str(tmp_path / "coarse.png"), "--gt-prob", "0.8", "-o", str(out)]) == 0
    labels = load_label_png(out)
    assert set(np.unique(labels)) == set(np.unique(coarse)) - {255}  # VOC values kept, void filled
    valid = gt != 255
    assert (labels == gt)[valid].mean() > 0.9 and (labels == coarse)[coarse != 255].mean() > 0.9


def test_cli_colour_annotation_like_the_classic_demo(shared_data, tmp_path):
    d = shared_data / "densecrf-examples"
    out, over = tmp_path / "out.png", tmp_path / "over.png"
    assert (
        main(
            [
                "crf",
                str(d / "im3.png"),
                "--labels",
                str(d / "anno3.png"),
                "--preset",
                "densecrf-demo",
                "-o",
                str(out),
                "--overlay",
                str(over),
            ]
        )
        == 0
    )
    anno = np.array(Image.open(d / "anno3.png").convert("RGB"))
    result = np.array(Image.open(out).convert("RGB"))
    known = anno.any(2)
    # annotated pixels keep their colour, unknown (black) pixels get one of the annotation colours
    assert (result == anno).all(2)[known].mean() > 0.97
    colours = {tuple(c) for c in anno[known].reshape(-1, 3)}
    assert {tuple(c) for c in np.unique(result.reshape(-1, 3), axis=0)} <= colours
    assert not (result == 0).all(2).any()


def test_cli_bad_inputs_exit_2(voc_tiny, tmp_path, capsys):
    image, mask = _voc(voc_tiny, 0)
    other_image, _ = _voc(voc_tiny, 1)  # another size
    np.save(tmp_path / "bad.npy", np.ones((3, 10, 10), np.float32))
    h, w = np.array(Image.open(image)).shape[:2]
    two_colours = np.zeros((h, w, 3), np.uint8)
    two_colours[: h // 2, :, 0] = 255
    two_colours[h // 2 :, :, 1] = 255
    Image.fromarray(two_colours).save(tmp_path / "anno.png")
    cases = [
        (["crf", str(image), "--probs", str(tmp_path / "bad.npy"), "-o", str(tmp_path / "o.png")], "bad.npy"),
        (["crf", str(image), "--probs", str(tmp_path / "missing.npy"), "-o", str(tmp_path / "o.png")], "missing.npy"),
        (["crf", str(tmp_path / "nope.jpg"), "--labels", str(mask), "-o", str(tmp_path / "o.png")], "nope.jpg"),
        (["crf", str(image), "--labels", str(mask), "--gt-prob", "1.5", "-o", str(tmp_path / "o.png")], "gt-prob"),
        (["crf", str(image), "--labels", str(mask), "--bi-xy-std", "0", "-o", str(tmp_path / "o.png")], "bi_xy_std"),
        # two colours in the annotation: gt_prob 0.5 would make every unary uniform
        (
            [
                "crf",
                str(image),
                "--labels",
                str(tmp_path / "anno.png"),
                "--gt-prob",
                "0.5",
                "-o",
                str(tmp_path / "o.png"),
            ],
            "carries no information",
        ),
        (["crf", str(other_image), "--labels", str(mask), "-o", str(tmp_path / "o.png")], "(H, W)"),
    ]
    for argv, words in cases:
        assert main(argv) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
