// Human-inspection studies: the studies on this server (each with its rater page to send people
// to, and its results with their intervals), and a form to design a new one on a run. Raters
// never see this view: their page (study/take) shows nothing of the model but each question.
import {el, getJson, WRITE_HEADERS} from './common.js';

const percent0 = (value) => (value == null || Number.isNaN(value) ? 'n/a' : `${Math.round(100 * value)}\u00a0%`);
// " (low-high)" after a figure, or nothing while there is no interval yet.
const interval = (pair) => (pair && pair[0] != null && !Number.isNaN(pair[0])
  ? ` (${percent0(pair[0])}\u2013${percent0(pair[1])})` : '');
const signed = (value) => `${value > 0 ? '+' : ''}${percent0(value)}`;
const signedInterval = (pair) => (pair && pair[0] != null ? ` (${signed(pair[0])} to ${signed(pair[1])})` : '');

export async function showStudies(target, runs, methods, notice = '') {
  let listing;
  try {
    listing = await getJson('./study/list');
  } catch (error) {
    target.replaceChildren(el('p', {class: 'error'}, error.message));
    return;
  }
  const rows = listing.studies.map((study) => el('tr', {'data-study': study.name},
    el('td', {}, study.name), el('td', {}, study.run || ''), el('td', {}, (study.conditions || []).join(', ')),
    el('td', {}, study.error ? el('span', {class: 'error'}, study.error)
      : `${study.trials} images${study.recognition ? ` + ${study.recognition} class pictures` : ''}`),
    el('td', {}, study.error ? '' : `${study.raters} of ${study.slots} slots, ${study.answers} answers`),
    el('td', {}, study.takeable
      ? el('a', {href: `./study/take?study=${encodeURIComponent(study.name)}`, target: '_blank', class: 'rater-link'},
           'rater page \u2197')
      : 'materials not ready'),
    el('td', {}, study.error ? '' : el('button', {class: 'show-results',
                                                  onclick: () => showResults(study.name)}, 'results'))));
  target.replaceChildren(
    el('p', {class: 'note'}, 'Ask people whether they understand the explanations: each rater sees every image once, ',
       'under one condition (an explanation method, or none), predicts the model, judges whether it is right, and ',
       'whether the map covers the object (docs/study.md). Send raters the rater page; it shows nothing else.'),
    listing.studies.length
      ? el('table', {id: 'studies'}, el('tr', {}, ...['study', 'run', 'conditions', 'shown', 'raters', '', '']
        .map((h) => el('th', {}, h))), ...rows)
      : el('p', {class: 'note'}, `No study yet in ${listing.folder}.`),
    el('div', {id: 'study-results'}),
    designForm(runs, methods, notice, (said) => showStudies(target, runs, methods, said)));
}

async function showResults(name) {
  const box = document.getElementById('study-results');
  box.replaceChildren(el('p', {class: 'note'}, `Computing the results of ${name}...`));
  let found;
  try {
    found = await getJson(`./study/results?study=${encodeURIComponent(name)}`);
  } catch (error) {
    box.replaceChildren(el('p', {class: 'error'}, error.message));
    return;
  }
  const head = ['condition', 'predicting the model (Wilson 95 %)', 'vs no explanation (bootstrap 95 %)',
                'telling right from wrong (balanced accuracy)', 'said "right" when wrong', 'map covers the object'];
  const rows = Object.entries(found.conditions).map(([condition, entry]) => {
    const s = entry.simulation, versus = s.vs_control;
    return el('tr', {'data-condition': condition}, el('td', {}, condition),
      el('td', {}, `${percent0(s.accuracy)}${s.n ? interval(s.wilson95) : ''}, n\u00a0=\u00a0${s.n}`),
      el('td', {}, versus ? `${signed(versus.difference)}${signedInterval(versus.bootstrap95)}` : '\u2013'),
      el('td', {}, `${percent0(entry.trust.balanced_accuracy)}${interval(entry.trust.bootstrap95)}`),
      el('td', {}, percent0(entry.trust.said_right_when_wrong)),
      el('td', {}, condition === 'none' ? '\u2013' : percent0(entry.localisation.covers)));
  });
  const lines = found.summary.filter((line) => !line.startsWith('|') && line !== found.caution);
  box.replaceChildren(
    el('h4', {}, `Results of ${name}: ${found.raters} raters, ${found.answers} answers`),
    ...(found.caution ? [el('p', {class: 'error', id: 'study-caution'}, found.caution)] : []),
    el('table', {id: 'study-table'}, el('tr', {}, ...head.map((h) => el('th', {}, h))), ...rows),
    el('img', {class: 'frontier', id: 'study-figure', alt: `results of ${name}`,
               src: `./study/results.png?study=${encodeURIComponent(name)}&n=${found.answers}`}),
    ...lines.slice(1).map((line) => el('div', {class: 'note'}, line)),
    ...(found.notes || []).map((note) => el('div', {class: 'error'}, `note: ${note}`)));
}

function designForm(runs, methods, notice, onCreated) {
  const run = el('select', {id: 'study-run'}, ...runs.map((r) => el('option', {value: r.name}, r.name)));
  const name = el('input', {id: 'study-name', type: 'text', placeholder: 'pilot', size: '14'});
  const boxes = methods.filter((m) => m.applicable).map((m) => el('label', {},
    el('input', {type: 'checkbox', class: 'study-condition', value: m.name,
                 ...(['cam', 'gradcam', 'saliency'].includes(m.name) ? {checked: ''} : {})}), ` ${m.name} `));
  const perClass = el('input', {id: 'study-per-class', type: 'number', min: '2', step: '2', value: '4', style: 'width: 4em'});
  const raters = el('input', {id: 'study-raters', type: 'number', min: '1', value: '8', style: 'width: 4em'});
  const marks = el('input', {id: 'study-marks', type: 'checkbox'});
  const message = el('span', {id: 'study-message', class: 'note'}, notice);
  const create = el('button', {id: 'study-create', onclick: async () => {
    const body = {name: name.value.trim(), run: run.value, per_class: Number(perClass.value), raters: Number(raters.value),
                  conditions: [...document.querySelectorAll('.study-condition:checked')].map((b) => b.value),
                  stamp_marks: marks.checked, request: Math.random().toString(36).slice(2)};
    create.disabled = true;
    message.className = 'note';
    try {
      const made = await getJson('./study/create', {method: 'POST', headers: {...WRITE_HEADERS, 'Content-Type': 'application/json'},
                                                    body: JSON.stringify(body)},
                                 (pending) => { message.textContent = pending; });
      onCreated(`study ${made.name} designed: ${made.trials} images, conditions ${made.conditions.join(', ')}`);
    } catch (error) {
      message.className = 'error';
      message.textContent = error.message;
    } finally {
      create.disabled = false;
    }
  }}, 'Design the study');
  return el('div', {class: 'block', id: 'study-design'},
    el('div', {class: 'block-title'}, 'Design a new study'),
    el('div', {class: 'bar'}, 'Run ', run, 'name ', name, 'conditions ', ...boxes, '+ none (always)'),
    el('div', {class: 'bar'}, 'images per class (half right, half wrong) ', perClass, 'rater slots ', raters,
       el('label', {title: 'for a model trained with --plant-mark: the known-answer study'}, marks,
          ' stamp the planted mark on half the images'), create, message));
}
