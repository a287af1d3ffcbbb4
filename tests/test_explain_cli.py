"""python -m cifar_xai.explain: outputs for real sample images, any image mode, one-line errors."""

import os
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_xai import CLASS_NAMES
from cifar_xai.images import MAX_PIXELS, load_image
from cifar_xai.models import build_model
from tests.conftest import ROOT, run_module

SAMPLES = ROOT / "samples"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "small.keras"
    build_model("interpretable_cnn", "small").save(path)
    return path


def explain_cli(*args, model=None):
    extra = ["--model", os.fspath(model)] if model else []
    return run_module("cifar_xai.explain", *args, *extra)


def explain_in_process(capsys, *args, model=None) -> tuple[int, list[str]]:
    """The CLI's exit status and stderr lines, run in this process (no TensorFlow start-up)."""
    from cifar_xai.errors import run_cli
    from cifar_xai.explain.__main__ import main

    extra = ["--model", os.fspath(model)] if model else []
    capsys.readouterr()
    try:
        status = run_cli(main, [*args, *extra])
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    return status, capsys.readouterr().err.strip().splitlines()


def test_the_samples_are_one_real_test_image_per_class():
    for name in CLASS_NAMES:
        image, notes = load_image(SAMPLES / f"{name}.png")
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and notes == []
        assert image.std() > 10  # a photograph, not a blank


def explained_stem(stdout: str, image: str, explained: str) -> str:
    """The outputs' stem: the image's name, with the explained class when it is not the prediction."""
    import re

    predicted = re.search(r"predicted (\w+)", stdout).group(1)
    return image if predicted == explained else f"{image}_{explained}"


@pytest.mark.slow
def test_writes_a_panel_and_the_raw_heatmap(model_file, tmp_path):
    result = explain_cli("--image", os.fspath(SAMPLES / "cat.png"), "--class_id", "3", "--method", "gradcam",
                         "--out", os.fspath(tmp_path), model=model_file)
    assert result.returncode == 0, result.stderr
    assert "explaining cat" in result.stdout and "predicted" in result.stdout
    stem = explained_stem(result.stdout, "cat", "cat")
    heatmap = np.load(tmp_path / f"{stem}_gradcam.npy")
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32 and 0 <= heatmap.min() <= heatmap.max() <= 1
    with Image.open(tmp_path / f"{stem}_gradcam.png") as panel:
        assert panel.width > 200 and panel.height > 200


@pytest.mark.slow
def test_feature_maps_of_a_chosen_layer_as_a_grid(model_file, tmp_path):
    result = explain_cli("--image", os.fspath(SAMPLES / "frog.png"), "--feature-maps", "--layer", "block2b_relu",
                         "--out", os.fspath(tmp_path), model=model_file)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "frog_features_block2b_relu.png") as grid:
        assert grid.width > 400
    assert "feature maps of block2b_relu" in result.stdout


@pytest.mark.slow
def test_all_methods_in_one_panel_with_a_class_name(model_file, tmp_path):
    result = explain_cli("--image", os.fspath(SAMPLES / "ship.png"), "--class", "truck", "--method", "all",
                         "--out", os.fspath(tmp_path), model=model_file)
    assert result.returncode == 0, result.stderr
    assert "explaining truck" in result.stdout
    stem = explained_stem(result.stdout, "ship", "truck")
    assert (tmp_path / f"{stem}_all.png").exists()
    assert {p.stem for p in tmp_path.glob("*.npy")} >= {f"{stem}_{m}" for m in ("cam", "gradcam", "saliency",
                                                                               "integrated_gradients", "scorecam")}


@pytest.mark.parametrize(("mode", "note"), [
    ("RGBA", "transparency composited on black"),
    ("L", "grayscale image repeated on 3 channels"),
    ("P", "palette image converted to RGB"),
    ("I;16", "I;16 image scaled to 8 bits"),
])
def test_any_mode_and_size_is_accepted_with_a_note(tmp_path, mode, note):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, size=(75, 120, 3), dtype=np.uint8))
    if mode == "I;16":
        image = Image.fromarray((rng.integers(0, 65536, size=(75, 120))).astype(np.uint16))
    elif mode == "P":
        image = rgb.quantize(16)
    else:
        image = rgb.convert(mode)
    image.save(tmp_path / "x.png")
    array, notes = load_image(tmp_path / "x.png")
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert note in notes and "resized from 120x75 to 32x32" in notes


def test_sixteen_bit_images_keep_their_brightness(tmp_path):
    Image.fromarray(np.full((32, 32), 65535, np.uint16)).save(tmp_path / "white16.png")
    array, _ = load_image(tmp_path / "white16.png")
    assert array.min() == 255


def write_bomb(path: Path) -> None:
    # A tiny PNG whose header claims more pixels than MAX_PIXELS.
    side = int(MAX_PIXELS ** 0.5) + 2000
    Image.new("1", (side, side)).save(path, optimize=True)


@pytest.mark.parametrize(("setup", "args", "message"), [
    (None, ["--image", "{tmp}/missing.png"], "image {tmp}/missing.png does not exist"),
    ("text", ["--image", "{tmp}/notes.png"], "is not an image file we read"),
    ("truncated", ["--image", "{tmp}/cut.png"], "could not be decoded"),
    ("bomb", ["--image", "{tmp}/bomb.png"], "is too large to decode safely"),
    (None, ["--image", "{samples}/cat.png", "--class_id", "10"], "class id 10 is out of range; valid: 0-9"),
    (None, ["--image", "{samples}/cat.png", "--class_id", "kitten"], "unknown class 'kitten'; valid: 0-9 or airplane"),
    (None, ["--image", "{samples}/cat.png", "--class_id", "-1"], "class id -1 is out of range; valid: 0-9"),
    (None, ["--image", "{samples}/cat.png", "--class_id", "3", "--class", "dog"],
     "--class_id 3 and --class dog both name a class; give one"),
    (None, ["--image", "{samples}/cat.png", "--method", "lime"], "unknown method 'lime'; valid: cam, gradcam"),
    (None, ["--image", "{samples}/cat.png", "--layer", "conv9"], "unknown conv layer 'conv9'; valid: cam_features"),
    ("not_ours", ["--image", "{samples}/cat.png", "--model", "{tmp}/other.keras"],
     "is a Keras model but not a cifar-xai"),
    ("text", ["--image", "{samples}/cat.png", "--model", "{tmp}/notes.png"], "is not a Keras model file"),
])
def test_bad_input_gets_one_line_and_no_traceback(model_file, tmp_path, capsys, setup, args, message):
    if setup == "text":
        (tmp_path / "notes.png").write_text("not an image")
    elif setup == "truncated":
        (tmp_path / "cut.png").write_bytes((SAMPLES / "cat.png").read_bytes()[:900])
    elif setup == "bomb":
        write_bomb(tmp_path / "bomb.png")
    elif setup == "not_ours":
        inputs = keras.Input((32, 32, 3))
        keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(tmp_path / "other.keras")
    args = [a.format(tmp=tmp_path, samples=SAMPLES) for a in args]
    status, lines = explain_in_process(capsys, *args, "--out", os.fspath(tmp_path / "out"),
                                       model=None if "--model" in args else model_file)
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message.format(tmp=tmp_path) in lines[0]


@pytest.mark.slow
def test_the_shipped_model_explains_without_training_first(tmp_path):
    """A new user's first command: no --model, the model in saved_models/ is used."""
    result = explain_cli("--image", os.fspath(SAMPLES / "horse.png"), "--method", "cam", "--out", os.fspath(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "horse_cam.png").exists()


def test_the_shipped_model_recognises_the_sample_images():
    from cifar_xai.explain import predict
    from cifar_xai.model_io import load_model

    model = load_model()
    images = np.stack([load_image(SAMPLES / f"{name}.png")[0] for name in CLASS_NAMES]).astype(np.float32)
    correct = int((predict(model, images).argmax(1) == np.arange(10)).sum())
    assert correct >= 8, f"only {correct} of the 10 sample images classified correctly"


@pytest.mark.slow
def test_the_project_descriptions_commands_run_as_aliases(tmp_path):
    """`python training/train.py ...` and `python explainability/gradcam.py ...`, as the description has them."""
    import subprocess
    import sys

    help_text = subprocess.run([sys.executable, "training/train.py", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=120)
    assert help_text.returncode == 0 and "python -m trainers.fit" in help_text.stdout
    explained = subprocess.run([sys.executable, "explainability/gradcam.py", "--image", "samples/cat.png",
                                "--class_id", "3", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert (tmp_path / "cat_gradcam.png").exists()


def explain_json(capsys, *args, model=None) -> tuple[int, list[dict], str]:
    """The CLI run in this process with --json: exit status, the parsed document, stderr."""
    import json

    from cifar_xai.errors import run_cli
    from cifar_xai.explain.__main__ import main

    extra = ["--model", os.fspath(model)] if model else []
    capsys.readouterr()
    status = run_cli(main, [*args, *extra, "--json"])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def test_the_shipped_model_says_not_to_trust_it_on_outliers(tmp_path, capsys):
    outliers = sorted((SAMPLES / "ood").glob("*.png"))
    photos = [SAMPLES / f"{name}.png" for name in CLASS_NAMES]
    status, report, _ = explain_json(capsys, "--image", *map(os.fspath, outliers + photos), "--method", "cam",
                                     "--out", os.fspath(tmp_path))
    assert status == 0
    verdicts = {Path(entry["image"]).name: entry["ood"] for entry in report}
    for path in outliers:  # noise, a flat colour and a Fashion-MNIST boot
        assert verdicts[path.name]["in_distribution"] is False, path.name
        assert "not to be trusted" in verdicts[path.name]["verdict"] and verdicts[path.name]["percentile"] < 5
    for path in photos:  # real CIFAR-10 test photographs
        assert verdicts[path.name]["in_distribution"] is True, path.name
    assert all(entry["calibrated"] for entry in report)


def test_a_close_call_adds_the_contrastive_map(tmp_path, capsys):
    status, report, _ = explain_json(capsys, "--image", os.fspath(SAMPLES / "close_call_cat.png"),
                                     "--method", "cam", "--out", os.fspath(tmp_path))
    assert status == 0 and report[0]["predicted"] == "cat" and report[0]["runner_up"] == "dog"
    assert report[0]["contrastive"] == "cat rather than dog"
    contrast = np.load(tmp_path / "close_call_cat_contrastive.npy")
    assert contrast.shape == (32, 32) and contrast.max() > 0 > contrast.min()  # evidence on both sides
    confident = explain_json(capsys, "--image", os.fspath(SAMPLES / "ship.png"), "--method", "cam",
                             "--out", os.fspath(tmp_path))[1]
    assert confident[0]["contrastive"] is None and not (tmp_path / "ship_contrastive.npy").exists()


def test_a_model_without_ood_statistics_still_explains_and_says_so(model_file, tmp_path, capsys):
    status, report, err = explain_json(capsys, "--image", os.fspath(SAMPLES / "cat.png"), "--method", "cam",
                                       "--out", os.fspath(tmp_path), model=model_file)
    assert status == 0 and report[0]["ood"] is None
    assert "no OOD statistics" in err and "trainers.fit_ood" in err


def test_statistics_of_another_model_are_named_and_the_image_still_explained(model_file, tmp_path, capsys):
    import shutil

    from cifar_xai.model_io import SHIPPED_MODEL
    from cifar_xai.uncertainty.detector import ood_path

    copy = tmp_path / "small.keras"
    shutil.copy(model_file, copy)
    shutil.copy(ood_path(SHIPPED_MODEL), ood_path(copy))  # the shipped model's statistics, not this model's
    status, report, err = explain_json(capsys, "--image", os.fspath(SAMPLES / "cat.png"), "--method", "cam",
                                       "--out", os.fspath(tmp_path / "out"), model=copy)
    assert status == 0 and report[0]["ood"] is None
    assert "fitted for another model" in err and "without an in-distribution verdict" in err


def test_a_phone_photo_is_turned_upright_before_it_is_resized(tmp_path):
    """EXIF orientation 6 (the camera held upright): the stored pixels are landscape, the photo
    displays as portrait. The model must see what the viewer sees."""
    stored = np.zeros((48, 64, 3), np.uint8)      # 64 wide x 48 high as stored
    stored[:, :32] = (255, 0, 0)                   # left half red as stored
    picture = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6                               # rotate 90 degrees clockwise to display
    picture.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image, notes = load_image(tmp_path / "phone.jpg")
    assert "resized from 48x64 to 32x32" in notes    # displayed as 48 wide x 64 high
    assert any("EXIF orientation (6)" in note for note in notes)
    # Turned clockwise, the stored left half becomes the top half.
    assert image[:12, :, 0].mean() > 200 and image[-12:, :, 0].mean() < 60
    # Without EXIF nothing is turned, and no note says so.
    picture.save(tmp_path / "plain.jpg", quality=95)
    plain, notes = load_image(tmp_path / "plain.jpg")
    assert "resized from 64x48 to 32x32" in notes and not any("EXIF" in n for n in notes)


def test_output_names_never_meet():
    from cifar_xai.explain.__main__ import output_names

    paths = [Path("a/cat.png"), Path("b/cat.png"), Path("photo.png"), Path("photo.jpg"), Path("dog.png")]
    names = output_names(paths)
    assert len(set(names)) == len(names)
    assert names[-1] == "dog"                                    # alone: its plain stem, as before
    assert output_names([Path("x.png"), Path("x.png")]) == ["x_png", "x_png_2"]


@pytest.mark.slow
def test_two_images_with_one_stem_get_two_panels(model_file, tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    Image.open(SAMPLES / "cat.png").save(tmp_path / "a" / "cat.png")
    Image.open(SAMPLES / "dog.png").save(tmp_path / "b" / "cat.png")    # another picture, the same name
    out = tmp_path / "out"
    status, _ = explain_in_process(capsys, "--image", os.fspath(tmp_path / "a" / "cat.png"),
                                   os.fspath(tmp_path / "b" / "cat.png"), "--method", "cam", "--out", os.fspath(out),
                                   model=model_file)
    assert status == 0
    first, second = (np.load(out / f"{name}_cam.npy") for name in ("a_cat_png", "b_cat_png"))
    assert not np.array_equal(first, second)
    assert {p.name for p in out.glob("*.png")} == {"a_cat_png_cam.png", "b_cat_png_cam.png"}


@pytest.mark.slow
def test_confidences_are_called_uncalibrated_where_the_temperature_did_not_help(tmp_path, capsys):
    """Each shipped model's probabilities are printed as calibrated exactly when its run's fitted
    temperature lowered the held-out ECE (read from its own record); a copy of the interpretable_cnn
    with its temperature set back to 1 is called uncalibrated."""
    import json

    from cifar_xai.errors import run_cli
    from cifar_xai.explain.__main__ import main
    from cifar_xai.model_io import load_model, run_metrics
    from cifar_xai.uncertainty import TEMPERATURE_LAYER
    from cifar_xai.uncertainty.calibration import lowered_ece

    shipped = ROOT / "saved_models"
    plain = load_model(shipped / "interpretable_cnn.keras")
    plain.get_layer(TEMPERATURE_LAYER).temperature.assign(1.0)
    plain.save(tmp_path / "plain.keras")
    cases = [(shipped / f"{name}.keras", lowered_ece(run_metrics(shipped / f"{name}.keras")["calibration"]))
             for name in ("prototype_cnn", "interpretable_cnn")] + [(tmp_path / "plain.keras", False)]
    for path, calibrated in cases:
        capsys.readouterr()
        assert run_cli(main, ["--image", os.fspath(SAMPLES / "cat.png"), "--method", "gradcam", "--out",
                              os.fspath(tmp_path / path.stem), "--json", "--model", os.fspath(path)]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out)[0]["calibrated"] is calibrated, path
        assert ("uncalibrated" in captured.err) is not calibrated, path


def test_an_unknown_method_lists_every_valid_one_once(capsys, model_file):
    status, lines = explain_in_process(capsys, "--image", os.fspath(SAMPLES / "cat.png"), "--method", "gradcamm",
                                       model=model_file)
    valid = lines[0].split("valid: ", 1)[1].split(", ")
    assert status == 2 and len(lines) == 1
    assert len(valid) == len(set(valid)) and {"cam", "gradcam", "prototypes", "all"} <= set(valid)


def test_explaining_another_class_than_the_prediction_never_replaces_its_files(capsys, model_file, tmp_path):
    """The predicted class's CAM and another class's CAM of the same image are two files."""
    import json

    from cifar_xai.errors import run_cli
    from cifar_xai.explain.__main__ import main

    out = os.fspath(tmp_path)
    run_cli(main, ["--image", os.fspath(SAMPLES / "cat.png"), "--method", "cam", "--out", out, "--json",
                   "--model", os.fspath(model_file)])
    predicted = json.loads(capsys.readouterr().out)[0]["predicted"]
    other = next(name for name in CLASS_NAMES if name != predicted)
    plain = np.load(tmp_path / "cat_cam.npy")
    run_cli(main, ["--image", os.fspath(SAMPLES / "cat.png"), "--method", "cam", "--class", other, "--out", out,
                   "--model", os.fspath(model_file)])
    assert (tmp_path / f"cat_{other}_cam.npy").is_file() and (tmp_path / f"cat_{other}_cam.png").is_file()
    assert np.array_equal(np.load(tmp_path / "cat_cam.npy"), plain)       # the prediction's map is untouched
    run_cli(main, ["--image", os.fspath(SAMPLES / "cat.png"), "--method", "cam", "--class", predicted, "--out", out,
                   "--model", os.fspath(model_file)])
    assert not (tmp_path / f"cat_{predicted}_cam.npy").exists()           # the prediction itself: the plain name
