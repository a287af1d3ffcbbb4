"""One image in full: every method's map for any class, the OOD verdict, the contrastive pair on a
close call, a prototype network's own evidence, the concepts the class logit splits into; and
uploads, decoded as the explain CLI decodes a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.config import DASHBOARD_UPLOAD_LIMIT
from cifar_xai.dashboard.context import JOB_WAIT, Context
from cifar_xai.dashboard.render import heatmap_png, png_data_url, signed_png
from cifar_xai.errors import UserError
from cifar_xai.explain.analysis import analyse
from cifar_xai.explain.maps import finish_maps, normalize_maps
from cifar_xai.explain.methods import METHODS
from cifar_xai.explain.registry import why_not

# Training images of a class the tab discovers its concepts in: fewer than the report's 1,000, so
# the first request for a class answers in seconds.
CONCEPT_IMAGES = 300


class Detail:
    def __init__(self, context: Context):
        self.context = context

    def detail(self, name: str, source: str, method: str = "cam", class_name: str | None = None) -> dict:
        run = self.context.run(name)
        if method not in METHODS:
            raise UserError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        if class_name is not None and class_name not in CLASS_NAMES:
            raise UserError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
        image, label = self.context.image(source)

        def compute() -> dict:
            found = analyse(run.model, image, [method], class_name, run.detector, run.calibrated)[0]
            result = found.to_dict()
            result.update(
                label=label, top=found.top(3), method=method, method_title=METHODS[method].title,
                map=heatmap_png(found.maps[method]) if method in found.maps else None,
                reason=None if method in found.maps else f"n/a: {why_not(run.model, method)}",
                contrastive_map=signed_png(found.contrastive) if found.contrastive is not None else None,
                rival=CLASS_NAMES[found.rival] if found.rival is not None else None,
                image=png_data_url(image), file_index=self._file_index(source),
                prototypes=prototype_evidence(run.model, image, class_name) if run.kind == "prototype_cnn" else None)
            return result

        return self.context.cached(("detail", name, source, method, class_name), compute)

    def _file_index(self, source: str) -> int | None:
        """A test image's place in test_batch.bin, beside its tfds index."""
        kind, _, key = source.partition(":")
        known = kind == "test" and self.context.file_index is not None
        return int(self.context.file_index[int(key)]) if known else None

    def concepts(self, name: str, source: str, class_name: str | None = None, images: int = CONCEPT_IMAGES) -> dict:
        """For a GAP network: the class logit split exactly among the concepts discovered (NMF) in
        the CAM map over the class's training images, with where each of the top three sits on this
        image. Discovery runs once per (run, class), as a job; n/a with the reason for other networks."""
        run = self.context.run(name)
        if run.kind != "interpretable_cnn":
            return {"reason": f"n/a: the logit splits over concepts only under a GAP head; this is a {run.kind}"}
        from cifar_xai.concepts.discovery import discover_concepts, explain_concepts
        from cifar_xai.concepts.study import training_split
        from cifar_xai.data.pipeline import split_arrays
        from cifar_xai.model_io import run_config
        from cifar_xai.probes import predict

        if class_name is not None and class_name not in CLASS_NAMES:
            raise UserError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
        image, _ = self.context.image(source)
        target = (CLASS_NAMES.index(class_name) if class_name
                  else int(predict(run.model, image[None].astype(np.float32)).argmax()))
        key = ("concepts", name, target, images)

        def discover():
            train = split_arrays(self.context.data_dir, training_split(run_config(run.path)), classes=(target,),
                                 limit=images)[0].numpy()
            return discover_concepts(run.model, train, target)

        basis = self.context.cache.get(key)
        if basis is None:
            basis = self.context.jobs.result(key, discover, JOB_WAIT,
                                             f"concept discovery for {CLASS_NAMES[target]} ({name})")
            self.context.cache.put(key, basis)
        found = explain_concepts(run.model, image[None], basis)
        contributions = found.contributions[0]
        maps = found.maps(basis)[0]                                   # [h, w, k] on this image
        top = np.argsort(-contributions)[:3]
        size = image.shape[:2]
        return {"class": CLASS_NAMES[target], "logit": float(found.logits[0]), "bias": float(found.bias),
                "residual": float(found.residual[0]), "images": int(images),
                "concepts": [{"rank": int(j) + 1, "contribution": float(c)} for j, c in enumerate(contributions)],
                "top": [{"rank": int(j) + 1, "contribution": float(contributions[j]),
                         "where": heatmap_png(finish_maps(maps[None, ..., j], size).numpy()[0])} for j in top]}

    def upload(self, data: bytes, filename: str = "upload") -> str:
        """Decode an uploaded image file (as the CLI reads one) and keep it; its id for `detail`."""
        name = Path(filename).name or "upload"   # the browser's name for it: never a server path
        if len(data) > DASHBOARD_UPLOAD_LIMIT:
            raise UserError(f"{name} is {len(data) / 1e6:.1f} MB; the dashboard takes images up to "
                            f"{DASHBOARD_UPLOAD_LIMIT // 2**20} MB")
        if not data:
            raise UserError(f"{name} is empty; choose an image file")
        from cifar_xai.images import decode_image

        image, _ = decode_image(data, name)
        return self.context.uploads.add(image)


def prototype_evidence(model, image: np.ndarray, class_name: str | None, top_k: int = 3) -> dict:
    """prototype_cnn's own account: the top prototypes by contribution, where each matches on the
    image, the training patch it was pushed onto, and the exact arithmetic (they add up to the logit)."""
    from cifar_xai.explain.prototypes import explain_prototypes, source_patches

    found = explain_prototypes(model, image, class_name, top_k)[0]
    sources, boxes = source_patches(model)
    top = []
    for rank, j in enumerate(found.top):
        top.append({"prototype": int(j), "class": CLASS_NAMES[found.prototype_classes[rank]],
                    "similarity": float(found.similarities[rank]), "weight": float(found.weights[rank]),
                    "contribution": float(found.contributions[j]),
                    "where": heatmap_png(normalize_maps(found.maps[rank:rank + 1]).numpy()[0]),
                    "source": png_data_url(sources[j]), "box": [int(v) for v in boxes[j]]})
    return {"logit": float(found.logit), "sum_of_contributions": float(found.contributions.sum()),
            "prototypes": len(found.contributions), "top": top}
