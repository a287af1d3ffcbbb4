"""The Explanations tab: a dynamic TensorBoard plugin (TensorBoard's `example_basic` pattern).

Registered under the `tensorboard_plugins` entry point (setup.cfg), so after the normal install
`tensorboard --logdir runs` shows it. Every route answers JSON (or a PNG) from `Dashboard`; a bad
request is a 4xx with a one-line `{"error": ...}`, never a traceback.
"""

from __future__ import annotations

import json
import threading
from importlib import resources

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import exceptions, wrappers

from cifar_xai.config import DASHBOARD_UPLOAD_LIMIT
from cifar_xai.errors import NotFound, UserError

PLUGIN_NAME = "cifar_xai_explanations"


def _json(request, data, code: int = 200):
    return http_util.Respond(request, json.dumps(data), "application/json", code=code)


def _answer(handler):
    """The route's result as JSON; one-line errors as 4xx (5xx only for our own bugs)."""
    @wrappers.Request.application
    def route(self, request):
        try:
            return handler(self, request)
        except NotFound as err:
            return _json(request, {"error": str(err)}, 404)
        except exceptions.RequestEntityTooLarge:
            limit = DASHBOARD_UPLOAD_LIMIT // 2**20
            return _json(request, {"error": f"the file is over {limit} MB; the dashboard takes smaller images"}, 413)
        except (UserError, ValueError) as err:
            return _json(request, {"error": (str(err).splitlines() or ["bad request"])[0]}, 400)
        except Exception as err:   # a bug of ours: still one line for the page, never a traceback
            return _json(request, {"error": f"internal error: {type(err).__name__}: {err}".splitlines()[0]}, 500)

    return route


class ExplanationsPlugin(base_plugin.TBPlugin):
    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._logdir = context.logdir or "."
        self._data_dir = getattr(context.flags, "cifar_xai_data_dir", None) or None
        self._dashboard = None
        self._lock = threading.Lock()
        # TensorFlow, the models' code and the test images load behind TensorBoard's start-up (the
        # backend's imports alone take seconds), not when the tab is first opened.
        threading.Thread(target=self._preload, daemon=True).start()

    @property
    def dashboard(self):
        with self._lock:
            if self._dashboard is None:
                from cifar_xai.dashboard.backend import Dashboard  # TensorFlow: off TensorBoard's start-up

                self._dashboard = Dashboard(self._logdir, self._data_dir)
            return self._dashboard

    def _preload(self):
        try:
            self.dashboard.test_images()
        except Exception:   # no data yet: the gallery route says so in one line when asked
            pass

    def is_active(self) -> bool:
        return True   # the shipped models are always there to explain

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Explanations")

    def get_plugin_apps(self):
        return {"/index.js": self._index_js, "/runs": self._runs, "/run": self._run, "/gallery": self._gallery,
                "/image": self._image, "/detail": self._detail, "/upload": self._upload,
                "/measurements": self._measurements, "/concepts": self._concepts}

    @wrappers.Request.application
    def _index_js(self, request):
        script = resources.files("cifar_xai.dashboard").joinpath("static/index.js").read_text()
        return http_util.Respond(request, script, "application/javascript")

    @_answer
    def _runs(self, request):
        return _json(request, {"runs": self.dashboard.runs()})

    @_answer
    def _run(self, request):
        return _json(request, self.dashboard.methods(_required(request, "run")))

    @_answer
    def _gallery(self, request):
        return _json(request, self.dashboard.gallery(_required(request, "run"), request.args.get("filter", "all"),
                                                     request.args.get("class") or None,
                                                     _number(request.args.get("page", "0"), "page")))

    @_answer
    def _image(self, request):
        png = self.dashboard.image_png(_number(_required(request, "index"), "index"))
        return http_util.Respond(request, png, "image/png")

    @_answer
    def _detail(self, request):
        return _json(request, self.dashboard.detail(_required(request, "run"), _required(request, "source"),
                                                    request.args.get("method", "cam"),
                                                    request.args.get("class") or None))

    @_answer
    def _concepts(self, request):
        return _json(request, self.dashboard.concepts(_required(request, "run"), _required(request, "source"),
                                                      request.args.get("class") or None))

    @_answer
    def _upload(self, request):
        if request.method != "POST":
            raise UserError("upload with POST and a file field named 'file'")
        request.max_content_length = DASHBOARD_UPLOAD_LIMIT + 64 * 1024   # the form's own bytes on top
        file = request.files.get("file")
        if file is None:
            raise UserError("no file in the upload; send it in a field named 'file'")
        return _json(request, {"source": "upload:" + self.dashboard.upload(file.read(), file.filename or "upload")})

    @_answer
    def _measurements(self, request):
        names = request.args.getlist("run")
        if not names:
            raise UserError("name at least one run: measurements?run=NAME")
        return _json(request, self.dashboard.measurements(names))


def _required(request, name: str) -> str:
    value = request.args.get(name)
    if not value:
        raise UserError(f"missing the {name!r} parameter")
    return value


def _number(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} {text!r} is not a whole number") from None


class ExplanationsLoader(base_plugin.TBLoader):
    """Adds --cifar_xai_data_dir (where tfds' cifar10 is, for the gallery's test images)."""

    def define_flags(self, parser):
        parser.add_argument("--cifar_xai_data_dir", default="",
                            help="tfds data dir holding cifar10 for the Explanations tab (default: tfds' own)")

    def load(self, context):
        return ExplanationsPlugin(context)
