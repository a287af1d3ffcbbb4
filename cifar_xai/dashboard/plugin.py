"""The Explanations tab: a dynamic TensorBoard plugin (TensorBoard's `example_basic` pattern).

Registered under the `tensorboard_plugins` entry point (setup.cfg), so after the normal install
`tensorboard --logdir runs` shows it. Every route answers JSON (or a PNG) from `Dashboard`; a bad
request is a 4xx with a one-line `{"error": ...}`, never a traceback.
"""

from __future__ import annotations

import json
import os
import threading
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import exceptions, wrappers

from cifar_xai.config import DASHBOARD_UPLOAD_LIMIT
from cifar_xai.dashboard.studies import Studies  # no TensorFlow: raters never wait for it to load
from cifar_xai.errors import Busy, NotFound, Pending, UserError

PLUGIN_NAME = "cifar_xai_explanations"
# Every request that changes something (an upload, a study's answer) carries this header. A page
# of another site cannot send it: a cross-site form has no custom headers, and a cross-site fetch
# with one needs a CORS preflight that TensorBoard never grants. TensorBoard itself has no XSRF
# check to reuse.
WRITE_HEADER = "X-Cifar-Xai"
# Where the tab finds human-inspection studies unless --cifar_xai_studies says otherwise.
STUDIES = "studies"
# An answer or a study's design is a few hundred bytes: a bigger body is not one.
STUDY_BODY_LIMIT = 64 * 1024
# Where the project and its shipped models live: never shown to a client.
_PROJECT = Path(__file__).resolve().parents[2]


class Refused(UserError):
    """A request the tab does not serve from where it came (HTTP 403)."""


def _first_line(err: Exception, default: str = "bad request") -> str:
    return (str(err).splitlines() or [default])[0]


def _answer(handler):
    """The route's result as JSON; one-line errors as 4xx (5xx only for our own bugs); a long job
    still running as 202, a server busy decoding as 503."""
    @wrappers.Request.application
    def route(self, request):
        try:
            return handler(self, request)
        except NotFound as err:
            return self._json(request, {"error": str(err)}, 404)
        except Refused as err:
            return self._json(request, {"error": str(err)}, 403)
        except exceptions.RequestEntityTooLarge:
            limit = DASHBOARD_UPLOAD_LIMIT // 2**20
            return self._json(request, {"error": f"the file is over {limit} MB; the dashboard takes smaller images"},
                              413)
        except Busy as err:
            return self._json(request, {"error": _first_line(err), "busy": True}, 503)
        except Pending as err:
            return self._json(request, {"pending": _first_line(err)}, 202)
        except UserError as err:
            return self._json(request, {"error": _first_line(err)}, 400)
        except ValueError as err:
            return self._json(request, {"error": _first_line(err)}, 400)
        except Exception as err:   # a bug of ours: still one line for the page, never a traceback
            return self._json(request, {"error": f"internal error: {type(err).__name__}: {err}".splitlines()[0]}, 500)

    return route


def _writes(handler):
    """A route that changes state: POST only, from the tab's own page (its header, and an Origin,
    when the browser sends one, of this very server), else 403 in one line."""
    def route(self, request):
        if request.method != "POST":
            raise UserError(f"{request.path.rsplit('/', 1)[-1]} takes a POST from the Explanations tab")
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            raise Refused(f"refused: a request from {origin} may not change anything here; "
                          "only the Explanations tab's own page may")
        if request.headers.get("Sec-Fetch-Site") == "cross-site" or request.headers.get(WRITE_HEADER) != "1":
            raise Refused(f"refused: requests that change something come only from the Explanations tab "
                          f"(they carry the {WRITE_HEADER} header)")
        return handler(self, request)

    return route


class ExplanationsPlugin(base_plugin.TBPlugin):
    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._logdir = context.logdir or "."
        # Absolute server paths in any answer become the paths a user types: relative to the logdir
        # or the project. Longest first, so a logdir inside the project loses its own prefix. Only
        # absolute roots: a short relative logdir ("a") would otherwise cut "a/" out of any text.
        roots = {os.fspath(Path(self._logdir).resolve()), os.fspath(_PROJECT)}
        self._roots = sorted((r.rstrip("/") + "/" for r in roots), key=len, reverse=True)
        self._data_dir = getattr(context.flags, "cifar_xai_data_dir", None) or None
        self._studies = Studies(getattr(context.flags, "cifar_xai_studies", None) or STUDIES)
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

    def _json(self, request, data, code: int = 200):
        text = json.dumps(data)
        for root in self._roots:
            text = text.replace(root, "")
        return http_util.Respond(request, text, "application/json", code=code)

    def is_active(self) -> bool:
        return True   # the shipped models are always there to explain

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Explanations")

    def get_plugin_apps(self):
        # The page's ES modules, one per view (index.js imports the others by relative path).
        modules = {f"/{item.name}": self._module for item in resources.files("cifar_xai.dashboard").joinpath("static")
                   .iterdir() if item.name.endswith(".js")}
        return {**modules, "/index.js": self._module, "/runs": self._runs, "/run": self._run, "/gallery": self._gallery,
                "/image": self._image, "/detail": self._detail, "/upload": self._upload,
                "/measurements": self._measurements, "/concepts": self._concepts, "/confusion": self._confusion,
                "/layers": self._layers, "/channel": self._channel, "/channel_image": self._channel_image,
                "/class_images": self._class_images, "/study/list": self._study_list, "/study/take": self._study_take,
                "/study/take.js": self._study_script, "/study/data.js": self._study_data,
                "/study/file": self._study_file, "/study/join": self._study_join, "/study/answer": self._study_answer,
                "/study/results": self._study_results, "/study/results.png": self._study_results_png,
                "/study/create": self._study_create}

    @wrappers.Request.application
    def _module(self, request):
        name = request.path.rsplit("/", 1)[-1]
        script = resources.files("cifar_xai.dashboard").joinpath("static", name).read_text()
        return http_util.Respond(request, script, "application/javascript")

    @_answer
    def _runs(self, request):
        return self._json(request, {"runs": self.dashboard.runs()})

    @_answer
    def _run(self, request):
        return self._json(request, self.dashboard.methods(_required(request, "run")))

    @_answer
    def _gallery(self, request):
        return self._json(request, self.dashboard.gallery(
            _required(request, "run"), request.args.get("filter", "all"), request.args.get("class") or None,
            _number(request.args.get("page", "0"), "page"), request.args.get("predicted") or None))

    @_answer
    def _layers(self, request):
        return self._json(request, self.dashboard.layers(_required(request, "run"), _required(request, "source")))

    @_answer
    def _channel(self, request):
        return self._json(request, self.dashboard.channel(
            _required(request, "run"), _required(request, "layer"), _number(_required(request, "channel"), "channel"),
            request.args.get("source") or None, request.args.get("class") or None))

    @_answer
    def _channel_image(self, request):
        return self._json(request, self.dashboard.channel_image(
            _required(request, "run"), _required(request, "layer"), _number(_required(request, "channel"), "channel")))

    @_answer
    def _class_images(self, request):
        return self._json(request, self.dashboard.class_images(_required(request, "run")))

    @_answer
    def _confusion(self, request):
        return self._json(request, self.dashboard.confusion(_required(request, "run")))

    @_answer
    def _image(self, request):
        png = self.dashboard.image_png(_number(_required(request, "index"), "index"))
        return http_util.Respond(request, png, "image/png")

    @_answer
    def _detail(self, request):
        return self._json(request, self.dashboard.detail(_required(request, "run"), _required(request, "source"),
                                                    request.args.get("method", "cam"),
                                                    request.args.get("class") or None))

    @_answer
    def _concepts(self, request):
        return self._json(request, self.dashboard.concepts(_required(request, "run"), _required(request, "source"),
                                                      request.args.get("class") or None))

    @_answer
    @_writes
    def _upload(self, request):
        request.max_content_length = DASHBOARD_UPLOAD_LIMIT + 64 * 1024   # the form's own bytes on top
        file = request.files.get("file")
        if file is None:
            raise UserError("no file in the upload; send it in a field named 'file'")
        key = self.dashboard.upload(file.read(), file.filename or "upload")
        return self._json(request, {"source": f"upload:{key}"})

    @_answer
    def _measurements(self, request):
        names = request.args.getlist("run")
        if not names:
            raise UserError("name at least one run: measurements?run=NAME")
        return self._json(request, self.dashboard.measurements(names))


    # ---- human-inspection studies (cifar_xai/dashboard/studies.py) ------------------------------
    @_answer
    def _study_list(self, request):
        return self._json(request, {"studies": self._studies.listing(), "folder": os.fspath(self._studies.folder)})

    @_answer
    def _study_take(self, request):
        return http_util.Respond(request, self._studies.page(_required(request, "study")), "text/html")

    @wrappers.Request.application
    def _study_script(self, request):
        from cifar_xai.study.page import page_file

        return http_util.Respond(request, page_file("take.js"), "application/javascript")

    @_answer
    def _study_data(self, request):
        return http_util.Respond(request, self._studies.data(_required(request, "study")), "application/javascript")

    @_answer
    def _study_file(self, request):
        data = self._studies.material(_required(request, "study"), _required(request, "name"))
        return http_util.Respond(request, data, "image/jpeg", expires=3600)

    @_answer
    @_writes
    def _study_join(self, request):
        body = _body(request)
        return self._json(request, self._studies.join(str(body.get("study", "")), str(body.get("rater", ""))))

    @_answer
    @_writes
    def _study_answer(self, request):
        body = _body(request)
        answer = {k: v for k, v in body.items() if k not in ("study", "rater")}
        record = self._studies.answer(str(body.get("study", "")), str(body.get("rater", "")), answer)
        return self._json(request, {"recorded": record})

    @_answer
    def _study_results(self, request):
        return self._json(request, self._studies.results(_required(request, "study")))

    @_answer
    def _study_results_png(self, request):
        return http_util.Respond(request, self._studies.results_png(_required(request, "study")), "image/png")

    @_answer
    @_writes
    def _study_create(self, request):
        body = _body(request)

        def model_of(name: str):
            run = self.dashboard.run(name)
            return run.model, os.fspath(run.path)

        return self._json(request, self._studies.create(self.dashboard.jobs, body, model_of,
                                                        self.dashboard.test_images))


def _body(request) -> dict:
    """A write's JSON object, at most STUDY_BODY_LIMIT bytes."""
    if (request.content_length or 0) > STUDY_BODY_LIMIT:
        raise UserError(f"the request is over {STUDY_BODY_LIMIT // 1024} KB; an answer is a few hundred bytes")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise UserError("send a JSON object (Content-Type: application/json)")
    return body


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
    """Adds --cifar_xai_data_dir (where tfds' cifar10 is, for the gallery's test images) and
    --cifar_xai_studies (where the studies are)."""

    def define_flags(self, parser):
        parser.add_argument("--cifar_xai_data_dir", default="",
                            help="tfds data dir holding cifar10 for the Explanations tab (default: tfds' own)")
        parser.add_argument("--cifar_xai_studies", default="",
                            help=f"folder of human-inspection studies for the Explanations tab (default: {STUDIES})")

    def load(self, context):
        return ExplanationsPlugin(context)
