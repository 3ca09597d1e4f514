import shutil

import numpy as np
import pytest
from PIL import Image

import deeplab.weights
from deeplab.cli import main
from deeplab.data.camvid import CAMVID_CLASSES, CAMVID_PALETTE
from deeplab.data.palette import full_palette
from deeplab.errors import InputError


@pytest.fixture(scope="module")
def tiny_model(tiny_camvid_model):
    return tiny_camvid_model


@pytest.fixture()
def images(camvid_tiny, tmp_path):
    """Two real CamVid frames (120x90; one re-encoded as JPEG) in a folder."""
    src = sorted((camvid_tiny / "test").glob("*.png"))[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(src[0], folder / src[0].name)
    Image.open(src[1]).convert("RGB").save(folder / f"{src[1].stem}.jpg", quality=95)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("crf", ["--crf", "--no-crf"])
def test_segment_folder_writes_palette_masks_and_overlays(tiny_model, images, tmp_path, crf):
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(images[0].parent),
                "-o",
                str(out),
                "--model",
                str(tiny_model),
                crf,
                "--overlay",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    for img in images:
        w, h = Image.open(img).size
        with Image.open(out / f"{img.stem}.png") as mask:
            assert mask.mode == "P" and mask.size == (w, h)
            pal = np.array(mask.getpalette()[:33], dtype=np.uint8).reshape(11, 3)
            assert (pal == full_palette(CAMVID_PALETTE)[:11]).all()
            assert np.array(mask).max() < len(CAMVID_CLASSES)
        with Image.open(out / f"{img.stem}_overlay.jpg") as ov:
            assert ov.size == (w, h)


def test_segment_unreadable_image_exits_2_naming_it(tiny_model, images, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    assert main(["segment", str(images[0]), str(bad), "-o", str(out), "--model", str(tiny_model), "--no-crf"]) == 2
    assert str(bad) in capsys.readouterr().err
    assert (out / f"{images[0].stem}.png").is_file() and not (out / "broken.png").exists()
    assert not (out / f"{images[0].stem}_overlay.jpg").exists()


def test_segment_input_errors_exit_2(tiny_model, images, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "out")
    assert main(["segment", str(tmp_path / "nope.png"), "-o", out, "--model", str(tiny_model)]) == 2
    assert "nope.png" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["segment", str(empty), "-o", out, "--model", str(tiny_model)]) == 2
    assert "no images" in capsys.readouterr().err
    dup = tmp_path / "dup"
    dup.mkdir()
    shutil.copy(images[0], dup / images[0].name)
    assert main(["segment", str(images[0]), str(dup), "-o", out, "--model", str(tiny_model)]) == 2
    assert "both be written" in capsys.readouterr().err
    assert main(["segment", str(images[0]), "-o", out, "--model", str(images[0])]) == 2
    assert str(images[0]) in capsys.readouterr().err
    monkeypatch.setattr(deeplab.weights, "DEFAULT_MODEL", "not_shipped.pt")
    assert main(["segment", str(images[0]), "-o", out, "--model", "default"]) == 2
    assert "not_shipped.pt" in capsys.readouterr().err


def test_default_model_resolves_inside_the_package(tiny_model, monkeypatch):
    monkeypatch.setattr(deeplab.weights, "DEFAULT_MODEL", "x.pt")
    with pytest.raises(InputError, match="--model PATH"):
        deeplab.weights.resolve_model_path("default")
    assert deeplab.weights.resolve_model_path(str(tiny_model)) == tiny_model


def test_segment_recursive_skip_existing_probs_and_summary(tiny_model, camvid_tiny, tmp_path, capsys):
    import json

    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    frames = sorted((camvid_tiny / "test").glob("*.png"))
    shutil.copy(frames[0], tree / "top.png")
    shutil.copy(frames[1], tree / "a" / "b" / "deep.png")
    out = tmp_path / "out"
    argv = ["segment", str(tree), "-o", str(out), "--model", str(tiny_model), "--no-progress"]
    assert main(argv) == 0  # without --recursive: the top folder only
    assert (out / "top.png").is_file() and not (out / "a").exists()
    (out / "top.png").unlink()
    assert main([*argv, "--recursive", "--save-probs", "npz", "--summary", str(out / "s.json"), "--bi-w", "5"]) == 0
    assert (out / "top.png").is_file() and (out / "a" / "b" / "deep.png").is_file()
    with np.load(out / "a" / "b" / "deep_probs.npz") as z:
        probs = z["probs"]
    assert probs.dtype == np.float16 and probs.shape == (11, 90, 120)
    np.testing.assert_allclose(probs.astype(np.float32).sum(0), 1, atol=1e-2)
    summary = json.loads((out / "s.json").read_text())
    assert summary["images"] == 2 and summary["crf"]["bi_w"] == 5
    record = summary["records"][0]
    assert record["size"] == [120, 90] and abs(sum(record["class_fractions"].values()) - 1) < 1e-4
    before = (out / "top.png").stat().st_mtime_ns
    assert main([*argv, "--recursive", "--skip-existing"]) == 0
    assert "nothing to do (2 image(s) already segmented" in capsys.readouterr().out
    assert (out / "top.png").stat().st_mtime_ns == before
