"""What the network learned, view by view: the layers view of one image (every block's most
responsive channels, their maps, the stem's filters) and a channel's card (its dataset examples
with where it fires, its feature visualisation, and at the CAM map what it votes for)."""

from __future__ import annotations

import numpy as np

from cifar_xai import CLASS_NAMES
from cifar_xai.dashboard.context import JOB_WAIT, Context
from cifar_xai.dashboard.render import heatmap_png, png_data_url
from cifar_xai.errors import UserError
from cifar_xai.explain.channels import (
    block_activations,
    block_layers,
    channel_statistics,
    channel_votes,
    check_channel,
    logit_shares,
    top_channels,
    votes_apply,
)
from cifar_xai.explain.inputs import ExplanationError
from cifar_xai.models import CAM_LAYER, STEM_LAYER

TOP_CHANNELS = 8       # channels shown per block in the layers view
EXAMPLES = 8           # dataset examples on a channel's card
VISUALISATION_STEPS = 64    # a channel image: about a minute on 2 cores without AVX-512


def _titles(layers: list[str]) -> dict[str, str]:
    """How the page names each block: position in the network and resolution."""
    return {name: ("the stem (whitening, fixed)" if name.startswith("stem") else
                   "the CAM map (what the classifier averages)" if name == CAM_LAYER else name.replace("_relu", ""))
            for name in layers}


def _maps_png(maps: np.ndarray, scale: float) -> list[str]:
    """Feature maps [k, h, w] as colour-mapped PNGs on one scale (0 .. the block's largest)."""
    return [heatmap_png(np.clip(m / scale, 0, 1)) for m in maps]


class Layers:
    def __init__(self, context: Context):
        self.context = context

    def _checked(self, run, layer: str, channel: int) -> None:
        try:
            check_channel(run.model, layer, channel)
        except ExplanationError as err:
            raise UserError(str(err)) from None

    def layers(self, name: str, source: str, top: int = TOP_CHANNELS) -> dict:
        """For every block, stem to CAM map: the `top` channels with the highest mean activation on
        this image, their maps at the block's resolution (one colour scale per block) and means."""
        run = self.context.run(name)
        image, label = self.context.image(source)

        def compute() -> dict:
            found = block_activations(run.model, image[None])
            titles = _titles(list(found))
            blocks = []
            for layer, activations in found.items():
                maps = activations[0]
                chosen = top_channels(maps, top)
                scale = float(maps[..., chosen].max()) or 1.0
                blocks.append({
                    "layer": layer, "title": titles[layer], "size": list(maps.shape[:2]), "channels": maps.shape[-1],
                    "votes": votes_apply(run.model, layer),
                    "top": [{"channel": int(c), "activation": float(maps[..., c].mean()), "map": png}
                            for c, png in zip(chosen, _maps_png(np.moveaxis(maps[..., chosen], -1, 0), scale),
                                              strict=True)]})
            from cifar_xai.explain.features import first_layer_filters

            filters = first_layer_filters(run.model)
            return {"run": name, "source": source, "label": label, "image": png_data_url(image), "blocks": blocks,
                    "filters": [png_data_url(np.round(f * 255).astype(np.uint8)) for f in filters],
                    "filters_note": f"{STEM_LAYER}: {len(filters)} fixed 2x2 whitening filters (from the training "
                                    "images' patch statistics, never trained), as RGB"}

        return self.context.cached(("layers", name, source, top), compute)

    def _statistics(self, name: str):
        """The run's per-channel statistics over the test split: computed once, as a job."""
        run = self.context.run(name)
        key = ("channel_statistics", name)
        found = self.context.cache.get(key)
        if found is None:
            images = self.context.test_images()[0]
            found = self.context.jobs.result(key, lambda: channel_statistics(run.model, images), JOB_WAIT,
                                             f"the channel statistics of {name} over {len(images):,} test images")
            self.context.cache.put(key, found)
        return found

    def channel(self, name: str, layer: str, channel: int, source: str | None = None,
                class_name: str | None = None) -> dict:
        """A channel's card: the test images that excite it most with where it fires, and for a CAM
        channel under a GAP head its vote for every class and its share of this image's logit."""
        run = self.context.run(name)
        self._checked(run, layer, channel)
        if class_name is not None and class_name not in CLASS_NAMES:
            raise UserError(f"unknown class {class_name!r}; valid: {', '.join(CLASS_NAMES)}")
        statistics = self._statistics(name)
        images, labels = self.context.test_images()
        indices, values = statistics.examples(layer, channel, EXAMPLES)
        maps = block_activations(run.model, images[indices])[layer][..., channel]
        scale = float(maps.max()) or 1.0
        examples = [{"index": int(i), "file_index": None if self.context.file_index is None
                     else int(self.context.file_index[i]), "label": CLASS_NAMES[labels[i]],
                     "activation": float(v), "image": png_data_url(images[i]), "where": png}
                    for i, v, png in zip(indices, values, _maps_png(maps, scale), strict=True)]
        column = statistics.means[layer][:, channel].astype(np.float32)
        card = {"run": name, "layer": layer, "title": _titles(block_layers(run.model))[layer], "channel": channel,
                "examples": examples, "images": int(len(column)),
                "distribution": {"mean": float(column.mean()), "p50": float(np.median(column)),
                                 "p99": float(np.quantile(column, 0.99)), "max": float(column.max())},
                "votes": None, "share": None,
                "votes_reason": None if votes_apply(run.model, layer) else
                ("n/a: only a CAM-map channel under a GAP head votes for classes directly; this one feeds the next "
                 "block" if layer != CAM_LAYER else f"n/a: this {run.kind} has no GAP head; its classifier mixes "
                 "positions")}
        if votes_apply(run.model, layer):
            card["votes"] = {c: float(v) for c, v in zip(CLASS_NAMES, channel_votes(run.model, channel), strict=True)}
            if source:
                image, _ = self.context.image(source)
                cam_map = block_activations(run.model, image[None])[CAM_LAYER][0]
                from cifar_xai.probes import predict

                target = (CLASS_NAMES.index(class_name) if class_name
                          else int(predict(run.model, image[None].astype(np.float32)).argmax()))
                shares = logit_shares(run.model, cam_map, target)
                card["share"] = {"class": CLASS_NAMES[target], "channel": float(shares[channel]),
                                 "all_channels": float(shares.sum()), "activation": float(cam_map[..., channel].mean()),
                                 "rank": int((shares > shares[channel]).sum()) + 1, "of": int(len(shares))}
        return card

    def channel_image(self, name: str, layer: str, channel: int) -> dict:
        """The channel's feature visualisation (cifar_xai.explain.visualise), computed once, as a job."""
        run = self.context.run(name)
        self._checked(run, layer, channel)
        key = ("channel_image", name, layer, channel)
        found = self.context.cache.get(key)
        if found is None:
            from cifar_xai.explain.visualise import visualise

            def compute() -> str:
                return png_data_url(visualise(run.model, layer=layer, channels=[channel],
                                              steps=VISUALISATION_STEPS)[0])

            found = self.context.jobs.result(key, compute, JOB_WAIT, f"the visualisation of {layer} channel {channel}")
            self.context.cache.put(key, found)
        return {"run": name, "layer": layer, "channel": channel, "image": found,
                "method": "optimised in a decorrelated Fourier parameterisation with transformation robustness "
                          "(docs/explanations.md)"}

    def class_images(self, name: str) -> dict:
        """What the model's every class looks like to it: one feature visualisation per class logit,
        computed once per run, as a job."""
        run = self.context.run(name)
        key = ("class_images", name)
        found = self.context.cache.get(key)
        if found is None:
            from cifar_xai.explain.visualise import visualise

            def compute() -> list[str]:
                return [png_data_url(image) for image in visualise(run.model, range(len(CLASS_NAMES)))]

            found = self.context.jobs.result(key, compute, JOB_WAIT, f"the class visualisations of {name}")
            self.context.cache.put(key, found)
        return {"run": name, "classes": list(CLASS_NAMES), "images": found}
