"""The study in the Explanations tab and in a bundle: the rater's page and its routes, refusals in
one line, and the whole loop in headless Chromium with scripted raters (an oracle, a random rater,
one killed mid-study, two at once), then a bundle taken from file:// and imported."""

from __future__ import annotations

import argparse
import json
import os
import random

import keras
import numpy as np
import pytest
from tensorboard.plugins import base_plugin
from werkzeug.test import Client

from cifar_xai.dashboard.plugin import ExplanationsPlugin
from cifar_xai.data.pipeline import split_arrays
from cifar_xai.study.answers import RECOGNITION, SIMULATION, TRUST, questions, rater_file, read_answers
from cifar_xai.study.bundle import import_answers, write_bundle
from cifar_xai.study.design import CONTROL, load_design
from cifar_xai.study.materials import prepare_study
from cifar_xai.study.statistics import results
from tests.conftest import watched

TAB = {"X-Cifar-Xai": "1", "Content-Type": "application/json"}


def make_study(folder, model_path, data_dir, conditions=("cam",), raters=2, recognition=True):
    model = keras.saving.load_model(model_path)
    images, labels = (t.numpy() for t in split_arrays(data_dir, "test"))
    return prepare_study(folder, model, os.fspath(model_path), images, labels, list(conditions), 2, raters, seed=1,
                         recognition=recognition)


@pytest.fixture(scope="module")
def study(studies_dir, logdir, tiny_data_dir):
    """A study of the tab's tiny run in the TensorBoard's studies folder: CAM against no explanation."""
    return make_study(studies_dir / "loop", logdir / "tiny" / "model.keras", tiny_data_dir)


@pytest.fixture(scope="module")
def plugin(logdir, tiny_data_dir, studies_dir, study):
    return ExplanationsPlugin(base_plugin.TBContext(logdir=os.fspath(logdir), flags=argparse.Namespace(
        cifar_xai_data_dir=os.fspath(tiny_data_dir), cifar_xai_studies=os.fspath(studies_dir))))


def call(plugin, route, query="", **kwargs):
    response = Client(plugin.get_plugin_apps()[route]).open(f"{route}?{query}", **kwargs)
    return response.status_code, response.get_data()


def post(plugin, route, body, headers=TAB):
    code, data = call(plugin, route, method="POST", data=json.dumps(body), headers=headers)
    return code, json.loads(data)


def oracle_answer(design, trial_id, task, condition):
    """What a rater who knows the model answers: its prediction, whether it is right, the map covers."""
    if task == RECOGNITION:
        return {"choice": design.recognition[int(trial_id[1:])]} if design.recognition else {}
    trial = design.trial(trial_id)
    return {SIMULATION: {"choice": trial.predicted}, TRUST: {"right": trial.correct, "confidence": 4},
            "localisation": {"covers": "yes", "mask": [1] * 32 + [0] * 32}}[task]


def test_the_tab_lists_a_study_and_serves_its_page_without_the_answer_key(plugin, study):
    code, listing = call(plugin, "/study/list")
    entry = next(s for s in json.loads(listing)["studies"] if s["name"] == "loop")
    assert code == 200 and entry["takeable"] and entry["conditions"] == ["cam", CONTROL]
    assert entry["trials"] == len(study.trials) and entry["recognition"] == 10
    code, page = call(plugin, "/study/take", "study=loop")
    assert code == 200 and b'src="data.js?study=loop"' in page and b'src="take.js"' in page
    code, script = call(plugin, "/study/data.js", "study=loop")
    data = json.loads(script.decode().removeprefix("window.STUDY = ").rstrip(";\n"))
    # The page knows each trial's choices and prediction (the trust question shows it), never its true label.
    assert set(data["trials"]["t000"]) == {"choices", "predicted", "image", "maps"}
    assert len(data["plans"]) == study.raters and len(data["plans"][0]) == len(questions(study, 0))
    name = data["trials"]["t000"]["maps"]["cam"][0]
    code, jpeg = call(plugin, "/study/file", f"study=loop&name={name}")
    assert code == 200 and jpeg[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(("route", "body", "headers", "status", "message"), [
    ("/study/join", {"study": "loop", "rater": "eve"}, {"Content-Type": "application/json"}, 403, "X-Cifar-Xai"),
    ("/study/join", {"study": "loop", "rater": "eve"}, {**TAB, "Origin": "http://evil.example"}, 403,
     "may not change anything"),
    ("/study/join", {"study": "nothing", "rater": "eve"}, TAB, 404, "no study named 'nothing'"),
    ("/study/join", {"study": "../etc", "rater": "eve"}, TAB, 400, "study name '../etc'"),
    ("/study/join", {"study": "loop", "rater": "a b"}, TAB, 400, "rater id 'a b'"),
    ("/study/answer", {"study": "loop", "rater": "never-joined", "trial": "t000", "task": "simulation"}, TAB, 400,
     "has not joined"),
])
def test_study_writes_are_refused_in_one_line(plugin, route, body, headers, status, message):
    code, answer = post(plugin, route, body, headers)
    assert code == status and message in answer["error"] and "\n" not in answer["error"]


def test_study_reads_refuse_bad_names_in_one_line(plugin):
    for query, status, message in [("study=loop&name=../design.json", 400, "is not a study image's name"),
                                   ("study=loop&name=t999.jpg", 404, "has no image t999.jpg"),
                                   ("name=t000.jpg", 400, "missing the 'study' parameter")]:
        code, body = call(plugin, "/study/file", query)
        assert code == status and message in json.loads(body)["error"]
    code, body = call(plugin, "/study/join", "study=loop&rater=x")
    assert code == 400 and "takes a POST" in json.loads(body)["error"]


def test_an_oracle_through_the_routes_scores_everything_and_bad_answers_change_nothing(plugin, study, studies_dir):
    code, joined = post(plugin, "/study/join", {"study": "loop", "rater": "oracle"})
    assert code == 200 and joined["answered"] == []
    slot = joined["slot"]
    conditions = dict((t.trial, c) for t, c in study.for_rater(slot))
    for trial, task in questions(study, slot):
        code, answer = post(plugin, "/study/answer", {"study": "loop", "rater": "oracle", "trial": trial, "task": task,
                                                      **oracle_answer(study, trial, task, conditions.get(trial))})
        assert code == 200, answer
    path = rater_file(studies_dir / "loop", "oracle")
    before = path.read_bytes()
    first = questions(study, slot)[0]
    for body, message in [({"trial": first[0], "task": first[1], "choice": study.trial(first[0]).predicted},
                           "already answered"),
                          ({"trial": "t999", "task": SIMULATION, "choice": "cat"}, "no trial 't999'"),
                          ({"trial": first[0], "task": "guess"}, "unknown task 'guess'")]:
        code, answer = post(plugin, "/study/answer", {"study": "loop", "rater": "oracle", **body})
        assert code == 400 and message in answer["error"]
    assert path.read_bytes() == before                 # refused answers leave the record as it was
    code, again = post(plugin, "/study/join", {"study": "loop", "rater": "oracle"})
    assert again["slot"] == slot and len(again["answered"]) == len(questions(study, slot))
    code, found = call(plugin, "/study/results", "study=loop")
    found = json.loads(found)
    oracle = [a for a in read_answers(path).answers if a["task"] == SIMULATION]
    assert all(a["choice"] == study.trial(a["trial"]).predicted for a in oracle)
    for condition in study.conditions:
        simulation = found["conditions"][condition]["simulation"]
        assert simulation["accuracy"] == 1.0 and simulation["wilson95"][0] > found["chance"]
    assert found["recognition"]["accuracy"] == 1.0 and found["masks"]["painted"] > 0
    assert found["conditions"]["cam"]["localisation"]["pointing_game"] is not None
    code, png = call(plugin, "/study/results.png", "study=loop")
    assert code == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_damaged_answer_file_is_read_with_a_note_and_nothing_lost(study, tmp_path, logdir, tiny_data_dir):
    folder = tmp_path / "damaged"
    design = make_study(folder, logdir / "tiny" / "model.keras", tiny_data_dir, recognition=False)
    from cifar_xai.study.answers import append_answer, join

    slot = join(folder, design, "ann")
    trial, task = questions(design, slot)[0]
    append_answer(folder, design, "ann", slot, {"trial": trial, "task": task, "choice": design.trial(trial).choices[0]})
    with rater_file(folder, "ann").open("ab") as handle:
        handle.write(b'{"trial": "t001", "task": "simu')       # the answer in flight when the server died
    record = read_answers(rater_file(folder, "ann"))
    assert len(record.answers) == 1 and "truncated last line" in record.skipped[0]
    assert results(design, record.answers)["answers"] == 1


# ---- the loop in a real browser ---------------------------------------------------------------

def answer_on_page(page, design, rater_kind: str, rng: random.Random, correct: dict):
    """Answer the question on screen as an oracle (the model's prediction, its correctness, "covers")
    or as a random rater; returns the task answered, or None when the study is done."""
    page.wait_for_function("['simulation', 'trust', 'localisation', 'recognition', 'done']"
                           ".includes(document.getElementById('app').dataset.task) && "
                           "!document.querySelector('#app button:disabled:not(#next)')", timeout=30_000)
    task, trial = page.eval_on_selector("#app", "a => [a.dataset.task, a.dataset.trial]")
    if task == "done":
        return None
    position = page.eval_on_selector("#app", "a => a.dataset.position")
    if task in (SIMULATION, RECOGNITION):
        names = page.eval_on_selector_all("button.choice", "bs => bs.map(b => b.dataset.class)")
        if rater_kind == "oracle":
            wanted = design.trial(trial).predicted if task == SIMULATION else design.recognition[int(trial[1:])]
        else:
            wanted = rng.choice(names)
        page.click(f"button.choice[data-class='{wanted}']")
    elif task == TRUST:
        right = correct[trial] if rater_kind == "oracle" else rng.random() < 0.5
        page.click("#right-yes" if right else "#right-no")
        page.click(f".confidence[data-value='{rng.randint(1, 4)}']")
        page.click("#next")
    else:
        page.click(f".covers[data-value='{rng.choice(['yes', 'partly', 'no'])}']")
        cells = page.query_selector_all(".cell")
        box = cells[18].bounding_box()
        page.mouse.move(box["x"] + 3, box["y"] + 3)
        page.mouse.down()
        end = cells[21].bounding_box()
        page.mouse.move(end["x"] + 3, end["y"] + 3, steps=6)
        page.mouse.up()
        page.click("#next")
    page.wait_for_function(f"document.getElementById('app').dataset.position !== '{position}'", timeout=30_000)
    return task


@pytest.mark.slow
def test_scripted_raters_take_the_study_in_a_real_browser(tensorboard, browser, study, studies_dir, tmp_path):
    """An oracle scores 100 % with an interval above chance; a random rater's interval holds 25 %;
    a rater whose page is closed mid-study resumes at the next unanswered question with nothing
    lost; two raters at once keep separate records and slots. With CIFAR_XAI_SCREENSHOTS=DIR, each
    kind of question's screenshot is saved in DIR."""
    url = f"{tensorboard}/data/plugin/cifar_xai_explanations/study/take?study=loop"
    shots = os.environ.get("CIFAR_XAI_SCREENSHOTS")
    correct = {t.trial: t.correct for t in study.trials}
    folder = studies_dir / "loop"
    rng = random.Random(0)

    def open_page(rater):
        page = browser.new_page(viewport={"width": 900, "height": 900})
        problems = watched(page)
        page.goto(url)
        page.fill("#rater", rater)
        page.click("#start")
        return page, problems

    # Two raters at once, answering in turn; the first is closed (killed) half-way and comes back.
    one, one_problems = open_page("ann")
    two, two_problems = open_page("ben")
    seen = set()
    half = len(questions(study, 0)) // 2
    for _ in range(half):
        task = page_task = one.eval_on_selector("#app", "a => a.dataset.task")
        if shots and page_task not in seen:
            seen.add(page_task)
            one.screenshot(path=os.path.join(shots, f"study-{page_task}.png"), full_page=True)
        task = answer_on_page(one, study, "oracle", rng, correct)
        assert task is not None
        answer_on_page(two, study, "random", rng, correct)
    one.close()
    saved = read_answers(rater_file(folder, "ann")).answers
    assert len(saved) == half                          # every answer given before the page closed
    back, back_problems = open_page("ann")
    back.wait_for_selector("#app[data-task]")
    assert back.eval_on_selector("#app", "a => a.dataset.position") == str(half)
    assert back.inner_text("#progress").startswith(f"Question {half + 1} of")
    while answer_on_page(back, study, "oracle", rng, correct):
        pass
    while answer_on_page(two, study, "random", rng, correct):
        pass
    if shots:
        back.screenshot(path=os.path.join(shots, "study-done.png"), full_page=True)
    ann, ben = (read_answers(rater_file(folder, r)).answers for r in ("ann", "ben"))
    assert len({(a["trial"], a["task"]) for a in ann}) == len(ann) == len(questions(study, ann[0]["slot"]))
    assert {a["rater"] for a in ann} == {"ann"} and {a["rater"] for a in ben} == {"ben"}
    assert ann[0]["slot"] != ben[0]["slot"]            # the Latin square's rows fill in turn
    found = results(study, [*ann, *ben])
    oracle = results(study, ann)
    random_rater = results(study, ben)
    for condition in study.conditions:
        s = oracle["conditions"][condition]["simulation"]
        assert s["accuracy"] == 1.0 and s["wilson95"][0] > 0.25
        low, high = random_rater["conditions"][condition]["simulation"]["wilson95"]
        assert low <= 0.25 <= high
    assert found["raters"] == 2 and found["caution"]   # two raters: too few to rank, and it says so
    painted = [a["mask"] for a in ann if a["task"] == "localisation" and a.get("mask")]
    assert painted and all(sum(mask) == 4 and mask[18] == mask[21] == 1 for mask in painted)
    for page in (two, back):
        page.close()
    for errors, failed in (one_problems, two_problems, back_problems):
        assert errors == [] and failed == [], (errors, failed)


@pytest.mark.slow
def test_a_bundle_is_taken_from_file_and_its_answers_imported(browser, study, studies_dir, tmp_path):
    bundle = write_bundle(studies_dir / "loop", tmp_path / "bundle")
    assert not (bundle / "design.json").exists() and not list(bundle.rglob("*.npz"))
    with pytest.raises(Exception, match="never written over"):
        write_bundle(studies_dir / "loop", bundle)
    page = browser.new_page(accept_downloads=True)
    errors, failed = watched(page)
    page.goto(f"file://{bundle}/index.html?rater=zoe&slot=1")
    rng = random.Random(1)
    correct = {t.trial: t.correct for t in study.trials}
    for _ in range(3):
        answer_on_page(page, study, "oracle", rng, correct)
    page.reload()                                      # closed and reopened: the answers stayed in the browser
    page.wait_for_selector("#app[data-task]")
    assert page.eval_on_selector("#app", "a => a.dataset.position") == "3"
    while answer_on_page(page, study, "oracle", rng, correct):
        pass
    with page.expect_download() as download:
        page.click("#download")
    answers = tmp_path / "zoe.jsonl"
    download.value.save_as(answers)
    page.close()
    assert errors == [] and failed == [], (errors, failed)
    added, known = import_answers(studies_dir / "loop", answers)
    assert added == len(questions(study, 1)) and known == 0
    assert import_answers(studies_dir / "loop", answers) == (0, added)     # a second import adds nothing
    zoe = [a for a in read_answers(rater_file(studies_dir / "loop", "zoe")).answers]
    assert {a["slot"] for a in zoe} == {1} and results(load_design(studies_dir / "loop"), zoe)["raters"] == 1
    assert np.mean([a["choice"] == study.trial(a["trial"]).predicted for a in zoe if a["task"] == SIMULATION]) == 1


@pytest.mark.slow
def test_a_study_is_designed_and_its_results_read_in_the_tab(tensorboard, browser, study, studies_dir):
    """In the tab: a new study designed on a run (a job: the page waits for it), listed with its
    rater page; the results of the loop study as a table, its caution and its figure."""
    from cifar_xai.dashboard.plugin import PLUGIN_NAME

    shots = os.environ.get("CIFAR_XAI_SCREENSHOTS")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, failed = watched(page)
    page.goto(f"{tensorboard}/data/plugin_entry.html?name={PLUGIN_NAME}")
    page.wait_for_selector("#study-create", timeout=60_000)
    page.select_option("#study-run", "tiny")
    page.fill("#study-name", "from-tab")
    page.fill("#study-per-class", "2")
    page.fill("#study-raters", "2")
    for box in page.query_selector_all(".study-condition"):
        if box.get_attribute("value") != "cam" and box.is_checked():
            box.uncheck()
    page.click("#study-create")
    page.wait_for_selector("tr[data-study='from-tab'] a.rater-link", timeout=120_000)
    assert "designed" in page.inner_text("#study-message")
    made = load_design(studies_dir / "from-tab")
    assert made.conditions == ("cam", CONTROL) and made.raters == 2
    link = page.get_attribute("tr[data-study='from-tab'] a.rater-link", "href")
    assert link.endswith("study/take?study=from-tab")
    page.click("tr[data-study='loop'] button.show-results")
    page.wait_for_selector("#study-table tr[data-condition='cam']", timeout=60_000)
    page.wait_for_function("document.querySelector('#study-figure').complete && "
                           "document.querySelector('#study-figure').naturalWidth > 0", timeout=60_000)
    assert "too few to rank" in page.inner_text("#study-caution")
    if shots:
        page.locator("#studies-view").screenshot(path=os.path.join(shots, "tab-studies.png"))
    page.fill("#study-name", "from-tab")              # the same name again: refused, nothing overwritten
    page.click("#study-create")
    page.wait_for_function("document.querySelector('#study-message').className === 'error'", timeout=60_000)
    assert "already exists" in page.inner_text("#study-message")
    page.close()
    assert errors == [e for e in errors if "400" in e] and all("study/create" in f for f in failed), (errors, failed)


def test_an_import_refuses_a_bad_line_in_one_line_and_registers_nothing(study, tmp_path, logdir, tiny_data_dir):
    from cifar_xai.errors import UserError
    from cifar_xai.study.answers import raters

    folder = tmp_path / "imported"
    design = make_study(folder, logdir / "tiny" / "model.keras", tiny_data_dir, recognition=False)
    trial, task = questions(design, 0)[0]
    good = {"trial": trial, "task": task, "choice": design.trial(trial).choices[0], "rater": "kim", "slot": 0}
    file = tmp_path / "kim.jsonl"
    file.write_text(json.dumps(good) + "\n" + json.dumps({**good, "trial": "t999", "rater": "lee"}) + "\n")
    with pytest.raises(UserError, match="answer 2: no trial 't999'.*the 1 answers before it were added"):
        import_answers(folder, file)
    assert raters(folder) == {"kim": 0}                 # the bad line's rater was never registered
    with pytest.raises(UserError, match="no answer file at"):
        import_answers(folder, tmp_path / "missing.jsonl")
    file.write_text(json.dumps(good) + "\n")
    assert import_answers(folder, file) == (0, 1)       # the line already imported: kept, not added again
