"""Export a trained model as a versioned SavedModel for TF Serving, with an in-graph CAM signature.

    <export_base>/<name>/<version>/      version = the next free integer
        saved_model.pb, variables/
        assets.extra/tf_serving_warmup_requests

Signatures (all outputs float32 or integer, whatever the training precision):

- `serving_default`: images uint8 [N, 32, 32, 3] -> probabilities float32 [N, 10] (calibrated when
  the model has a temperature), class_id int32 [N], class_name string [N]; with the model's OOD
  detector (`<model>.ood.npz`, `python -m trainers.fit_ood`) also ood_score float32 [N] (higher =
  more like the training images) and in_distribution bool [N] (score at or above the threshold
  that keeps 95 % of held-out training-distribution images). Scaling and normalisation happen
  inside the graph, and so does the detector: its statistics are constants of the graph.
- `explain_cam`: images -> heatmaps float32 [N, 32, 32] in [0, 1] (CAM of the predicted class), class_id.
- `explain_cam_class`: images, class_id int32 [N] (-1: the predicted class) -> heatmaps, class_id.
- `explain_prototypes` (prototype_cnn instead of the two above): images -> for the predicted
  class, the `PROTOTYPE_TOP_K` prototypes with the largest contributions: prototype_id int32
  [N, K], similarity and contribution float32 [N, K] (contribution = last-layer weight x
  similarity; over all prototypes they sum to the logit), similarity_maps float32 [N, K, 32, 32]
  (upsampled log-similarity), source_image int32 [N, K] (the training image, by its index in the
  training split, the prototype was pushed onto), class_id.

TF Serving loads a version folder as soon as it appears, so the export is written under a hidden
name and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cifar_xai import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES, faults
from cifar_xai.errors import UserError
from cifar_xai.explain.cam_family import class_activation_maps
from cifar_xai.explain.maps import finish_maps
from cifar_xai.files import replace_folder
from cifar_xai.models import (
    CAM_LAYER,
    DISTANCES_LAYER,
    LOGITS_LAYER,
    SIMILARITY_MAPS_LAYER,
    has_gap_head,
    is_prototype_model,
)
from cifar_xai.probes import probe_for
from cifar_xai.uncertainty.calibration import temperature_of
from cifar_xai.uncertainty.detector import OODDetector, output_tap

IMAGE_SPEC = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.uint8, name="images")
CLASS_SPEC = tf.TensorSpec([None], tf.int32, name="class_id")
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
PROTOTYPE_TOP_K = 3   # the prototypes `explain_prototypes` returns per image, as the explain CLI shows


def next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def serving_functions(model: keras.Model, detector: OODDetector | None = None) -> dict[str, tuple]:
    """Signature name -> (function, input signature), all computing in float32 at the edges."""
    names = tf.constant(CLASS_NAMES)
    probe = probe_for(model, CAM_LAYER)
    # One forward pass gives the logits and everything the OOD scores read (the image and its mirror
    # in one batch, for a flip-averaged detector), and answers an empty batch without running the
    # convolutions, which fail on one.
    tap = output_tap(model, detector.flip_average if detector else False)
    temperature = temperature_of(model)

    def serve(images):
        # Loaded signatures do not enforce their static shape on every caller; the graph does.
        images = tf.ensure_shape(images, IMAGE_SPEC.shape)
        outputs = tap(tf.cast(images, tf.float32))
        # The model's own head: softmax of the logits over its folded temperature.
        probs = tf.nn.softmax(outputs["class_logits"] / temperature)
        class_id = tf.argmax(probs, axis=1, output_type=tf.int32)
        served = {"probabilities": probs, "class_id": class_id, "class_name": tf.gather(names, class_id)}
        if detector is not None:
            score = detector.score_outputs(outputs, [detector.default])[detector.default]
            served.update(ood_score=score, in_distribution=score >= detector.thresholds[detector.default])
        return served

    def cam(images, class_id=None):
        images = tf.ensure_shape(images, IMAGE_SPEC.shape)

        def run():
            # One forward pass gives both the map under the GAP and the logits that pick the class.
            features, logits = probe.features_and_logits(tf.cast(images, tf.float32))
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            chosen = predicted if class_id is None else tf.where(class_id < 0, predicted, class_id)
            return finish_maps(class_activation_maps(probe, features, chosen), IMAGE_SPEC.shape[1:3]), chosen

        def empty():
            return tf.zeros([0, *IMAGE_SPEC.shape[1:3]], tf.float32), tf.zeros([0], tf.int32)

        maps, chosen = tf.cond(tf.shape(images)[0] > 0, run, empty)
        return {"heatmaps": maps, "class_id": chosen}

    def explain_cam(images):
        return cam(images)

    def explain_cam_class(images, class_id):
        checks = [
            tf.debugging.assert_less(class_id, NUM_CLASSES, message=f"class_id must be -1 or 0-{NUM_CLASSES - 1}"),
            tf.debugging.assert_greater_equal(class_id, -1, message=f"class_id must be -1 or 0-{NUM_CLASSES - 1}"),
        ]
        # The checks before the lookup: unordered, the gather's own "not in [0, 10)" could come first.
        with tf.control_dependencies(checks):
            class_id = tf.identity(class_id)
        return cam(images, class_id)

    functions = {"serving_default": (serve, [IMAGE_SPEC])}
    if is_prototype_model(model):
        functions["explain_prototypes"] = (prototype_function(model), [IMAGE_SPEC])
    if has_gap_head(model):
        functions["explain_cam"] = (explain_cam, [IMAGE_SPEC])
        functions["explain_cam_class"] = (explain_cam_class, [IMAGE_SPEC, CLASS_SPEC])
    return functions


def prototype_function(model: keras.Model, top_k: int = PROTOTYPE_TOP_K):
    """The `explain_prototypes` signature: `explain_prototypes` (cifar_xai.explain.prototypes.py) in the graph."""
    probe = probe_for(model, SIMILARITY_MAPS_LAYER)
    kernel = model.get_layer(LOGITS_LAYER).kernel
    positions = model.get_layer(DISTANCES_LAYER).source_positions
    k = min(top_k, model.get_layer(DISTANCES_LAYER).prototypes)

    def explain_prototypes(images):
        images = tf.ensure_shape(images, IMAGE_SPEC.shape)

        def run():
            maps, logits = probe.features_and_logits(tf.cast(images, tf.float32))
            predicted = tf.argmax(logits, axis=1, output_type=tf.int32)
            weights = tf.gather(tf.transpose(tf.cast(kernel, tf.float32)), predicted)        # [N, M]
            contributions = tf.reduce_max(maps, axis=[1, 2]) * weights
            top = tf.math.top_k(contributions, k)
            chosen = tf.gather(maps, top.indices, axis=3, batch_dims=1)                      # [N, h, w, K]
            upsampled = tf.transpose(tf.image.resize(chosen, IMAGE_SPEC.shape[1:3], "bilinear"), [0, 3, 1, 2])
            return {"prototype_id": top.indices, "similarity": tf.reduce_max(chosen, axis=[1, 2]),
                    "contribution": top.values, "similarity_maps": upsampled,
                    "source_image": tf.gather(positions[:, 0], top.indices), "class_id": predicted}

        def empty():
            return {"prototype_id": tf.zeros([0, k], tf.int32), "similarity": tf.zeros([0, k]),
                    "contribution": tf.zeros([0, k]), "similarity_maps": tf.zeros([0, k, *IMAGE_SPEC.shape[1:3]]),
                    "source_image": tf.zeros([0, k], tf.int32), "class_id": tf.zeros([0], tf.int32)}

        return tf.cond(tf.shape(images)[0] > 0, run, empty)

    return explain_prototypes


def write_warmup_requests(path: Path, model_name: str, signatures: list[str]) -> None:
    """One PredictRequest per signature, replayed by TF Serving at load time so the first real
    request does not pay for graph initialisation."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    images = np.full((1, *IMAGE_SPEC.shape[1:]), 128, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(os.fspath(path)) as writer:
        for signature in signatures:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
            if signature == "explain_cam_class":
                request.inputs["class_id"].CopyFrom(tf.make_tensor_proto(np.array([-1], np.int32)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export_saved_model(
    model: keras.Model,
    export_base: str | os.PathLike = "saved_models",
    name: str | None = None,
    version: int | None = None,
    overwrite: bool = False,
    detector: OODDetector | None = None,
) -> Path:
    """Write the SavedModel (with `detector`'s ood_score and in_distribution) and return its version folder."""
    name = name or model.name
    model_dir = Path(export_base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)
    target = model_dir / str(version)
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it, or omit --version")
    if target.exists() and not (target / "saved_model.pb").is_file():
        raise UserError(f"{target} is not a SavedModel this project wrote, so --overwrite will not replace it; "
                        "choose another --version or --export-base")
    staging = model_dir / f".incomplete-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoints track every variable they use, and tracking the model
    # as well stored each variable twice (Keras' wrappers and the tf.Variables), 2x the size.
    functions = serving_functions(model, detector)
    for signature, (function, spec) in functions.items():
        archive.add_endpoint(name=signature, fn=function, input_signature=spec)
    archive.write_out(os.fspath(staging), verbose=False)
    write_warmup_requests(staging / WARMUP_FILE, name, list(functions))
    faults.reached("export:staged")
    replace_folder(staging, target)
    return target
