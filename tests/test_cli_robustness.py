"""Every command under bad input, faults and careless use: nothing lost, nothing silently wrong, exit 2 with one
line naming the file or flag (never a traceback), 130 / 143 when interrupted."""

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from deeplab.cli import main
from deeplab.crf import dense_crf_unary
from deeplab.data.images import load_rgb
from deeplab.engine.trainer import run_folder_lock
from deeplab.errors import InputError
from deeplab.models import load_model
from engine_tiny import tiny_dict, write_config

CLI = [sys.executable, "-m", "deeplab"]


@pytest.fixture(scope="module")
def tiny_model(tiny_camvid_model):
    return tiny_camvid_model


@pytest.fixture()
def photos(camvid_tiny, tmp_path):
    """A folder of two PNG photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in sorted((camvid_tiny / "test").glob("*.png")):
        shutil.copy(src, folder / src.name)
    return folder


def run_cli(args, **kw):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)


def assert_clean_error(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


# --- nothing lost ---------------------------------------------------------------------------------------------


def test_segment_into_its_own_input_folder_is_refused_before_any_work(tiny_model, photos, capsys):
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert main(["segment", str(photos), "-o", str(photos), "--model", str(tiny_model), "--no-crf"]) == 2
    assert_clean_error(capsys, "overwrite the input")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


@pytest.mark.slow
def test_masks_are_written_atomically_under_a_file_size_limit(tiny_model, photos, tmp_path):
    """A second run that cannot write (ulimit -f) keeps the first run's complete masks and exits 2."""
    out = tmp_path / "out"
    assert main(["segment", str(photos), "-o", str(out), "--model", str(tiny_model), "--no-crf"]) == 0
    good = {p.name: p.read_bytes() for p in out.iterdir()}

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    proc = run_cli(
        ["segment", photos, "-o", out, "--model", tiny_model, "--no-crf", "--no-progress", "--overlay"],
        preexec_fn=limit,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "cannot write" in proc.stderr
    for name, data in good.items():
        assert (out / name).read_bytes() == data
        assert np.array(Image.open(out / name)).shape == (90, 120)
    assert not [p for p in out.iterdir() if p.name.startswith(".deeplab-")]  # no temp files left


def test_crf_output_is_atomic_and_never_an_input(voc_tiny, tmp_path, capsys):
    image = voc_tiny / "JPEGImages/2007_000033.jpg"
    mask = voc_tiny / "SegmentationClass/2007_000033.png"
    copy = tmp_path / "mask.png"
    shutil.copy(mask, copy)
    assert main(["crf", str(image), "--labels", str(copy), "-o", str(copy)]) == 2
    assert_clean_error(capsys, "input file")
    assert copy.read_bytes() == mask.read_bytes()


def test_a_second_training_into_the_same_folder_is_refused(camvid_tiny, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny, train={"iterations": 1}))
    out = tmp_path / "run"
    (out).mkdir()
    (out / ".deeplab-orphan.tmp").write_bytes(b"left by a killed run")
    with run_folder_lock(out):  # a first training holds the folder
        assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 2
        assert_clean_error(capsys, "another training", str(os.getpid()))
    assert main(["train", str(cfg), "--out", str(out), "--no-progress"]) == 0  # free again
    assert not (out / ".deeplab-orphan.tmp").exists()  # orphaned temp files cleaned on the next start


# --- nothing silently wrong ------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :10] = 255  # a white stripe on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    shown = load_rgb(tmp_path / "phone.jpg")
    assert shown.shape == (60, 40, 3)  # as a viewer shows it
    assert shown[:10].mean() > 200 and shown[-10:].mean() < 50  # the stripe is now at the top


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(256, dtype=np.uint16)[None, :] * 257).repeat(8, 0)  # 0..65535
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    rgb = load_rgb(tmp_path / "deep.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 256, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], np.arange(256))
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(InputError, match="floating-point"):
        load_rgb(tmp_path / "float.tiff")


@pytest.mark.parametrize("energy", [1e30, 1e35, 3e38])
def test_crf_stays_a_distribution_for_any_finite_unary(energy):
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    q = dense_crf_unary(img, np.full((5, 30, 40), energy, np.float32))
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-5)
    np.testing.assert_allclose(q, 0.2, atol=1e-5)  # equal energies: uniform
    u = np.zeros((5, 30, 40), np.float32)
    u[1:] = energy
    assert dense_crf_unary(img, u)[0].min() > 0.999


def test_a_model_with_nan_weights_is_named_as_the_cause(tiny_model, photos, tmp_path, capsys):
    ckpt = torch.load(tiny_model, weights_only=True)
    ckpt["state_dict"]["classifier.weight"][0, 0] = float("nan")
    broken = tmp_path / "broken.pt"
    torch.save(ckpt, broken)
    assert main(["segment", str(photos), "-o", str(tmp_path / "o"), "--model", str(broken), "--no-crf"]) == 2
    assert_clean_error(capsys, "broken.pt", "NaN")
    with pytest.raises(InputError, match="NaN"):
        load_model(broken)


def test_a_model_file_without_preprocess_mean_is_reported(tiny_model, photos, tmp_path, capsys):
    ckpt = torch.load(tiny_model, weights_only=True)
    del ckpt["preprocess"]["mean"]
    bad = tmp_path / "nomean.pt"
    torch.save(ckpt, bad)
    assert main(["segment", str(photos), "-o", str(tmp_path / "o"), "--model", str(bad)]) == 2
    assert_clean_error(capsys, "nomean.pt", "mean")


# --- exit 2 with one line, never a traceback -------------------------------------------------------------------


def test_segment_bad_outputs_and_flags(tiny_model, photos, tmp_path, capsys):
    model = ["--model", str(tiny_model), "--no-crf"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["segment", str(photos), "-o", str(a_file), *model]) == 2
    assert_clean_error(capsys, "file.txt", "is a file")
    out = tmp_path / "out"
    (out / sorted(photos.iterdir())[0].with_suffix(".png").name).mkdir(parents=True)
    assert main(["segment", str(photos), "-o", str(out), *model]) == 2
    assert_clean_error(capsys, "is a folder")
    long_name = photos / ("x" * 248 + ".png")  # the overlay name, x..x_overlay.jpg, is 260 bytes
    shutil.copy(sorted(photos.iterdir())[0], long_name)
    assert main(["segment", str(long_name), "-o", str(tmp_path / "o2"), "--overlay", *model]) == 2
    assert_clean_error(capsys, "longer than")
    assert main(["segment", str(photos), "-o", str(tmp_path / "o3"), "--threads", "-1", *model]) == 2
    assert_clean_error(capsys, "--threads")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_segment_into_a_read_only_folder(tiny_model, photos, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert main(["segment", str(photos), "-o", str(ro / "out"), "--model", str(tiny_model)]) == 2
    assert_clean_error(capsys, "not writable")


def test_segment_writes_the_readable_images_when_one_is_missing(tiny_model, photos, tmp_path, capsys):
    good = sorted(photos.iterdir())[0]
    out = tmp_path / "out"
    argv = f"segment {good} {tmp_path / 'missing.jpg'} -o {out} --model {tiny_model} --no-crf --no-progress".split()
    assert main(argv) == 2
    assert_clean_error(capsys, "missing.jpg")
    assert (out / f"{good.stem}.png").is_file()
    # only missing inputs: the error alone, no "nothing to do (0 already segmented)"
    assert main(f"segment {tmp_path / 'gone.jpg'} -o {out} --model {tiny_model} --no-progress".split()) == 2
    captured = capsys.readouterr()
    assert "gone.jpg" in captured.err and "nothing to do" not in captured.out


@pytest.mark.parametrize(
    "args, words",
    [
        (["-o", "{t}/m.jpg"], ["m.jpg", ".png"]),
        (["-o", "{t}/m"], ["no suffix"]),
        (["-o", "{t}/dir/"], ["is a folder"]),
        (["-o", "{t}/m.png", "--overlay", "{t}/o.xyz"], ["--overlay", "o.xyz"]),
        (["-o", "{t}/m.png", "--save-probs", "{t}/dir/"], ["--save-probs"]),
        (["-o", "{t}/m.png", "--threads", "0"], ["--threads"]),
        (["-o", "{t}/m.png", "--bi-xy-std", "1e-30"], ["bi_xy_std"]),
        (["-o", "{t}/m.png", "--max-size", "-1"], ["--max-size"]),
        (["-o", "{t}/m.png", "--skip-tolerance", "-0.1"], ["--skip-tolerance"]),
        (["-o", "{t}/m.png", "--skip-tolerance", "nan"], ["--skip-tolerance"]),
    ],
)
def test_crf_bad_outputs_and_flags(voc_tiny, tmp_path, capsys, args, words):
    image = voc_tiny / "JPEGImages/2007_000033.jpg"
    mask = voc_tiny / "SegmentationClass/2007_000033.png"
    argv = ["crf", str(image), "--labels", str(mask)] + [a.format(t=tmp_path) for a in args]
    assert main(argv) == 2
    assert_clean_error(capsys, *words)


def test_other_commands_bad_outputs_and_flags(tiny_model, camvid_tiny, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    argv = f"evaluate --model {tiny_model} --dataset camvid --data {camvid_tiny} -o {a_file}".split()
    assert main(argv) == 2
    assert_clean_error(capsys, "is a file")
    assert main(["export", str(tiny_model), "-o", str(tmp_path / "dir") + "/"]) == 2
    assert_clean_error(capsys, "is a folder")
    assert main(["benchmark", "--size", "-5"]) == 2
    assert_clean_error(capsys, "--size")
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny))
    assert main(["train", str(cfg), "--out", str(a_file)]) == 2
    assert_clean_error(capsys, "--out", "is a file")


@pytest.mark.slow
def test_training_divergence_is_a_clean_error(camvid_tiny, tmp_path, capsys):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny, train={"iterations": 30, "lr": 1e8}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert_clean_error(capsys, "diverged", "train.lr")


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_is_a_clean_error(camvid_tiny, tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(camvid_tiny, train={"iterations": 2}))

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # config and log fit, the checkpoint does not

    proc = run_cli(["train", cfg, "--out", tmp_path / "run", "--no-progress"], preexec_fn=limit)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "checkpoint.pt" in proc.stderr


@pytest.mark.slow
def test_a_bad_sample_in_a_loader_worker_is_one_line(camvid_tiny, tmp_path, capsys):
    data = tmp_path / "camvid"
    shutil.copytree(camvid_tiny, data)
    first = sorted((data / "train").glob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:200])  # truncated
    cfg = write_config(tmp_path / "tiny.yaml", tiny_dict(data, data={"workers": 1}, train={"iterations": 4}))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = assert_clean_error(capsys, first.name)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_at_start_up_and_during_the_crf(tiny_model, photos, tmp_path, sig, code):
    """A signal at any moment: while Python starts and imports, while compiled CRF kernels run, and while numba
    compiles them (an empty cache folder)."""
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)).save(big / "a.png")
    fresh_cache = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    for delay, env in ((0.05, None), (0.3, None), (2.5, None), (4.0, fresh_cache)):
        argv = f"segment {big} -o {tmp_path / f'o{delay}'} --model {tiny_model} --workers 0 --no-progress".split()
        proc = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=300)
        if proc.returncode == 0:  # finished before the signal arrived
            continue
        # -sig: killed by the signal's default action while the interpreter itself started (a shell shows
        # 128 + sig, the same as our exit code)
        assert proc.returncode in (code, -sig), err
        assert "Traceback" not in err and "SystemError" not in err


# --- readers under random and truncated files ------------------------------------------------------------------


def fuzzed(src: bytes, rng) -> list[bytes]:
    cuts = [src[: len(src) // k] for k in (2, 3, 10)] + [b"", src[:8]]
    flipped = bytearray(src)
    for i in rng.integers(0, len(src), 30):
        flipped[i] ^= 0xFF
    return [*cuts, bytes(flipped), rng.bytes(len(src) // 4)]


def test_readers_reject_truncated_and_random_files_with_input_errors(tiny_model, voc_tiny, tmp_path):
    from deeplab.crf.annotation import read_annotation
    from deeplab.data.palette import load_label_png
    from deeplab.engine.config import load_config

    rng = np.random.default_rng(0)
    cases = [
        (voc_tiny / "JPEGImages/2007_000033.jpg", ".jpg", load_rgb),
        (voc_tiny / "SegmentationClass/2007_000033.png", ".png", load_label_png),
        (voc_tiny / "SegmentationClass/2007_000033.png", ".png", lambda p: read_annotation(p, 255, None)),
        (tiny_model, ".pt", load_model),
    ]
    tried = 0
    for src, suffix, reader in cases:
        for k, data in enumerate(fuzzed(src.read_bytes(), rng)):
            path = tmp_path / f"f{tried}_{k}{suffix}"
            path.write_bytes(data)
            with contextlib.suppress(InputError):
                reader(path)
            tried += 1
    for k, data in enumerate([b"train: [1, 2", b"\xff\xfe\x00", b"- a\n- b\n", b"train:\n  lr: {a: 1}\n"]):
        path = tmp_path / f"c{k}.yaml"
        path.write_bytes(data)
        with pytest.raises(InputError):
            load_config(path)
    assert tried == 28


def test_big_photo_is_segmented_within_max_size(tiny_model, tmp_path, capsys):
    """An image larger than --max-size runs at that size; the mask comes back at full size, and the command
    says so."""
    big = tmp_path / "big.png"
    img = np.zeros((1200, 1600, 3), np.uint8)
    img[:, 800:] = 255
    Image.fromarray(img).save(big)
    out = tmp_path / "out"
    argv = f"segment {big} -o {out} --model {tiny_model} --max-size 400 --no-progress".split()
    argv += ["--summary", str(out / "summary.json")]
    assert main(argv) == 0
    assert Image.open(out / "big.png").size == (1600, 1200)
    assert "segmented at --max-size 400" in capsys.readouterr().err
    record = json.loads((out / "summary.json").read_text())["records"][0]
    assert record["size"] == [1600, 1200] and record["processed_size"] == [400, 300]


def test_without_matplotlib_plots_are_skipped_with_a_note(tiny_model, camvid_tiny, tmp_path, capsys, monkeypatch):
    import deeplab.engine.plots

    monkeypatch.setattr(deeplab.engine.plots, "plotting_available", lambda: False)
    monkeypatch.setattr("deeplab.commands.evaluate.plotting_available", lambda: False, raising=False)
    out = tmp_path / "ev"
    argv = f"evaluate --model {tiny_model} --dataset camvid --data {camvid_tiny} --split test --trimap 3".split()
    argv += ["--workers", "0", "--no-progress", "-o", str(out)]
    assert main(argv) == 0
    assert "deeplab-v1[plots]" in capsys.readouterr().err
    assert (out / "metrics.json").is_file() and not (out / "trimap.png").exists()


@pytest.mark.slow
def test_crf_output_survives_a_failed_rewrite(voc_tiny, tmp_path):
    image = voc_tiny / "JPEGImages/2007_000033.jpg"
    mask = voc_tiny / "SegmentationClass/2007_000033.png"
    out = tmp_path / "refined.png"
    assert main(["crf", str(image), "--labels", str(mask), "-o", str(out)]) == 0
    good = out.read_bytes()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))

    proc = run_cli(["crf", image, "--labels", mask, "-o", out], preexec_fn=limit)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "cannot write" in proc.stderr
    assert out.read_bytes() == good


@pytest.mark.slow
def test_interrupting_a_crf_search_with_worker_processes(tiny_model, camvid_tiny, tmp_path):
    """Ctrl-C reaches the whole process group: the workers ignore it, the main process ends the pool, 130."""
    argv = f"crf-search --model {tiny_model} --dataset camvid --data {camvid_tiny} --split train+val+test --images 8"
    argv = [*CLI, *argv.split(), "--grid", "paper", "--workers", "2", "--no-progress", "-o", str(tmp_path / "s.json")]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(8)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not (tmp_path / "s.json").exists()
