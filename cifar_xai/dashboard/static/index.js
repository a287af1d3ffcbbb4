// The Explanations tab: ES modules, no build step, no network fetch beyond the plugin's own
// routes (relative to the plugin's frame: TensorBoard sets <base href="plugin/<name>/">).
// This module holds the shell, the gallery, the detail pane and the measurements; layers.js,
// mistakes.js, studies.js and share.js hold the other views.
import {el, getJson, percent, stale, testName, ticket, WRITE_HEADERS} from './common.js';
import {showChannel, showLayers} from './layers.js';
import {showConfusion} from './mistakes.js';
import {showStudies} from './studies.js';
import {downloadJson, downloadPng, linkToView, readState, writeState} from './share.js';

const FILTERS = [
  ['all', 'all'], ['correct', 'correct'], ['wrong', 'wrong'], ['least_confident', 'least confident'],
  ['flagged_ood', 'flagged out-of-distribution'], ['close_calls', 'close calls'],
];
// The overlay's colours (matplotlib's inferno), for the colour bar.
const INFERNO = ['#000004', '#320a5e', '#781c6d', '#bc3754', '#ed6925', '#fbb61a', '#fcffa4'];

const state = {run: null, info: null, filter: 'all', cls: '', predicted: '', page: 0, source: null, method: 'cam',
               explain: '', compare: '', panel: 'explanation', layer: '', channel: ''};
let shown = null;   // the detail answer on screen, for the downloads
let allRuns = [];   // every run the server lists, for the study form

const STYLE = `
  body { font-family: Roboto, sans-serif; font-size: 13px; margin: 12px; color: #212121; }
  .bar { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }
  .layout { display: flex; gap: 16px; align-items: flex-start; }
  .gallery { display: grid; grid-template-columns: repeat(8, 72px); gap: 6px; }
  .thumb { cursor: pointer; text-align: center; font-size: 10px; border: 2px solid transparent; }
  .thumb.wrong { border-color: #d32f2f; } .thumb.flagged { outline: 2px dashed #f57c00; }
  .thumb img, .big img { image-rendering: pixelated; display: block; }
  .thumb img { width: 64px; height: 64px; margin: auto; }
  .big { position: relative; width: 256px; height: 256px; }
  .big img { position: absolute; left: 0; top: 0; width: 256px; height: 256px; }
  .colourbar { width: 256px; height: 10px; background: linear-gradient(to right, ${INFERNO.join(', ')}); }
  .probability { display: flex; align-items: center; gap: 6px; white-space: nowrap; }
  .probability .fill { height: 10px; background: #1976d2; }
  .error { color: #b71c1c; } .note { color: #616161; }
  table { border-collapse: collapse; } td, th { border-bottom: 1px solid #e0e0e0; padding: 2px 8px; white-space: nowrap; }
  img.frontier { max-width: 560px; display: block; margin: 6px 0; }
  .tabs button { padding: 4px 10px; } .tabs button.on { font-weight: bold; border-bottom: 2px solid #1976d2; }
  .block { margin: 8px 0 12px; } .block-title { font-weight: bold; margin-bottom: 4px; }
  .channel { cursor: pointer; text-align: center; font-size: 10px; } .channel:hover { outline: 2px solid #1976d2; }
  .pair { display: flex; gap: 2px; } figure { margin: 0; text-align: center; font-size: 10px; }
  table.confusion td.cell { cursor: pointer; text-align: right; min-width: 34px; }
  table.confusion td.cell:hover { outline: 2px solid #212121; }
  .filters-on { background: #e3f2fd; padding: 2px 6px; }
`;

export async function render() {
  document.head.append(el('style', {}, STYLE));
  readState(state);
  const runSelect = el('select', {id: 'run', onchange: () => chooseRun(runSelect.value, true)});
  const filterSelect = el('select', {id: 'filter', onchange: () => { state.filter = filterSelect.value; state.page = 0; showGallery(); }},
    ...FILTERS.map(([value, label]) => el('option', {value}, label)));
  const classSelect = el('select', {id: 'class-filter', onchange: () => { state.cls = classSelect.value; state.page = 0; showGallery(); }});
  const predictedSelect = el('select', {id: 'predicted-filter', onchange: () => { state.predicted = predictedSelect.value; state.page = 0; showGallery(); }});
  const upload = el('input', {type: 'file', id: 'upload', accept: 'image/*', onchange: () => uploadFile(upload.files[0])});
  const compareSelect = el('select', {id: 'compare', onchange: () => { state.compare = compareSelect.value; if (state.source) showDetail(); else writeState(state); }});
  document.body.append(
    el('div', {class: 'bar'}, 'Run ', runSelect, 'beside ', compareSelect, 'Show ', filterSelect, 'True class ', classSelect,
       'Predicted ', predictedSelect, 'Your own image ', upload, el('span', {id: 'upload-message', class: 'error'})),
    el('div', {class: 'layout'},
       el('div', {}, el('div', {id: 'gallery', class: 'gallery'}), el('div', {id: 'pager', class: 'bar'})),
       el('div', {id: 'detail'})),
    el('h3', {}, 'Mistakes'), el('div', {id: 'mistakes'}),
    el('h3', {}, 'Measurements'), el('div', {id: 'measurements'}),
    el('h3', {}, 'Human-inspection studies'), el('div', {id: 'studies-view'}));
  const {runs} = await getJson('./runs');
  allRuns = runs;
  for (const run of runs) runSelect.append(el('option', {value: run.name}, run.name));
  compareSelect.append(el('option', {value: ''}, 'no other run'), ...runs.map((run) => el('option', {value: run.name}, run.name)));
  if (!runs.length) return;
  const wanted = runs.some((run) => run.name === state.run) ? state.run : runs[0].name;
  compareSelect.value = state.compare || '';
  await chooseRun(wanted, false);
  if (state.source) await showDetail();
}

async function chooseRun(name, fresh) {
  state.run = name;
  document.getElementById('run').value = name;
  if (fresh) {
    // Before any answer arrives: a click on the new run's gallery must not be undone by this.
    Object.assign(state, {page: 0, cls: '', predicted: '', filter: 'all', source: null, layer: '', channel: ''});
    ticket('detail');
    document.getElementById('detail').replaceChildren();
  }
  const mine = ticket('run');
  const info = await getJson(`./run?run=${encodeURIComponent(name)}`);
  if (stale('run', mine)) return;
  state.info = info;
  for (const [id, key, first] of [['class-filter', 'cls', 'every class'], ['predicted-filter', 'predicted', 'any']]) {
    const select = document.getElementById(id);
    select.replaceChildren(el('option', {value: ''}, first), ...state.info.classes.map((c) => el('option', {value: c}, c)));
    select.value = state[key] || '';
  }
  document.getElementById('filter').value = state.filter;
  const usable = state.info.methods.filter((m) => m.applicable).map((m) => m.name);
  if (!usable.includes(state.method)) state.method = usable.length ? usable[0] : 'cam';
  // The matrix waits for the whole test split's predictions: it fills in when they are ready,
  // never holding up the gallery or the detail view.
  showConfusion(document.getElementById('mistakes'), state.run, openCell, ticket('mistakes'));
  showMeasurements();
  showStudies(document.getElementById('studies-view'), allRuns, state.info.methods);
  await showGallery();
}

// A confusion-matrix cell: the gallery of those images (true class x predicted class).
function openCell(trueClass, predicted) {
  Object.assign(state, {cls: trueClass, predicted, filter: 'all', page: 0});
  document.getElementById('class-filter').value = trueClass;
  document.getElementById('predicted-filter').value = predicted;
  document.getElementById('filter').value = 'all';
  showGallery();
  document.getElementById('gallery').scrollIntoView({block: 'nearest'});
}

async function showGallery() {
  writeState(state);
  const params = new URLSearchParams({run: state.run, filter: state.filter, page: state.page});
  if (state.cls) params.set('class', state.cls);
  if (state.predicted) params.set('predicted', state.predicted);
  const gallery = document.getElementById('gallery');
  const mine = ticket('gallery');
  let page;
  try {
    page = await getJson(`./gallery?${params}`, undefined, (message) => {
      if (!stale('gallery', mine)) gallery.replaceChildren(el('span', {class: 'note'}, message));
    });
  } catch (error) {
    if (!stale('gallery', mine)) gallery.replaceChildren(el('span', {class: 'note'}, error.message));
    return;
  }
  if (stale('gallery', mine)) return;
  gallery.replaceChildren(...page.items.map((item) => el('div', {
    class: `thumb${item.correct ? '' : ' wrong'}${item.flagged ? ' flagged' : ''}`, 'data-index': item.index,
    'data-label': item.label, 'data-predicted': item.predicted,
    title: `${testName(item.index, item.file_index)}: true ${item.label}`, onclick: () => openImage(`test:${item.index}`),
  }, el('img', {src: `./image?index=${item.index}`, alt: `test image ${item.index}`}),
     `${item.predicted} ${percent(item.confidence)}`)));
  const pager = document.getElementById('pager');
  const filtered = [state.cls && `true ${state.cls}`, state.predicted && `predicted ${state.predicted}`].filter(Boolean);
  pager.replaceChildren(
    el('button', {onclick: () => { state.page -= 1; showGallery(); }, ...(page.page === 0 ? {disabled: ''} : {})}, '‹'),
    `page ${page.page + 1} of ${page.pages} (${page.total} images${page.calibrated ? '' : '; confidences uncalibrated'})`,
    el('button', {onclick: () => { state.page += 1; showGallery(); }, ...(page.page + 1 >= page.pages ? {disabled: ''} : {})}, '›'),
    ...(filtered.length ? [el('span', {class: 'filters-on', id: 'cell-filter'}, filtered.join(', '),
        ' ', el('button', {onclick: () => openCell('', '')}, 'clear'))] : []),
    el('span', {class: 'note'}, 'red border: wrong; dashed orange: flagged out-of-distribution'));
}

async function openImage(source) {
  Object.assign(state, {source, explain: '', panel: state.panel || 'explanation', layer: '', channel: ''});
  await showDetail();
}

async function showDetail() {
  writeState(state);
  const mine = ticket('detail');
  const detail = document.getElementById('detail');
  const tabs = el('div', {class: 'bar tabs'},
    ...[['explanation', 'Why: the explanation'], ['layers', 'What it learned: inside the network']].map(([panel, label]) =>
      el('button', {id: `panel-${panel}`, class: state.panel === panel ? 'on' : '',
                    onclick: () => { state.panel = panel; showDetail(); }}, label)));
  if (state.panel === 'layers') {
    const target = el('div', {id: 'layers'});
    detail.replaceChildren(tabs, target);
    await showLayers(target, state, openChannel, () => stale('detail', mine));
    if (!stale('detail', mine) && state.layer && state.channel !== '') await openChannel(state.layer, state.channel);
    return;
  }
  const params = new URLSearchParams({run: state.run, source: state.source, method: state.method});
  if (state.explain) params.set('class', state.explain);
  let found;
  try {
    found = await getJson(`./detail?${params}`);
  } catch (error) {
    if (!stale('detail', mine)) detail.replaceChildren(tabs, el('div', {class: 'error'}, error.message));
    return;
  }
  if (stale('detail', mine)) return;
  shown = found;
  const opacity = el('input', {type: 'range', id: 'opacity', min: 0, max: 1, step: 0.05, value: 0.6,
    oninput: () => { overlay.style.opacity = opacity.value; }});
  const overlay = el('img', {id: 'overlay', alt: `${found.method_title} map`, style: 'opacity: 0.6'});
  if (found.map) overlay.src = found.map;
  const methodSelect = el('select', {id: 'method', onchange: () => { state.method = methodSelect.value; showDetail(); }},
    ...state.info.methods.map((m) => el('option', {value: m.name, ...(m.name === state.method ? {selected: ''} : {}),
                                                  ...(m.applicable ? {} : {disabled: ''})},
                                        m.applicable ? m.title : `${m.title} (n/a)`)));
  // Top three first, then the rest: explain any class.
  const ordered = [...found.top.map(([name]) => name),
                   ...state.info.classes.filter((c) => !found.top.some(([name]) => name === c))];
  const classSelect = el('select', {id: 'explain-class', onchange: () => { state.explain = classSelect.value; showDetail(); }},
    ...ordered.map((c) => el('option', {value: c, ...(c === found.explained ? {selected: ''} : {})}, c)));
  const bars = Object.entries(found.probabilities).sort((a, b) => b[1] - a[1]).map(([name, p]) =>
    el('div', {class: 'probability'}, el('span', {style: 'width: 72px'}, name),
       el('div', {class: 'fill', style: `width: ${Math.round(200 * p)}px`}), percent(p)));
  const ood = found.ood
    ? el('div', {id: 'ood', class: found.ood.in_distribution ? 'note' : 'error'},
         `${found.ood.in_distribution ? 'In' : 'OUT OF'} distribution: ${found.ood.verdict} (percentile ${found.ood.percentile}: `
         + `that share of held-out CIFAR-10 images score lower on ${found.ood.score})`)
    : el('div', {id: 'ood', class: 'note'}, 'No out-of-distribution statistics for this model (python -m trainers.fit_ood fits them).');
  const name = state.source.startsWith('test:') ? testName(state.source.slice(5), found.file_index) : state.source;
  const parts = [tabs,
    el('div', {class: 'bar'}, `${name}${found.label ? ` (true ${found.label})` : ''}: predicted `,
       el('b', {id: 'predicted'}, found.predicted), ` ${percent(found.probability)}${found.calibrated ? ' (calibrated)' : ' (uncalibrated)'}`),
    el('div', {class: 'bar'}, 'Method ', methodSelect, 'Explain ', classSelect, 'Opacity ', opacity),
    el('div', {class: 'big'}, el('img', {id: 'image', src: found.image, alt: 'image'}), overlay),
    el('div', {class: 'colourbar', title: 'map value, 0 (left) to 1 (right)'}),
    el('div', {class: 'bar note'}, 'no evidence', el('span', {style: 'margin-left: auto'}, 'most evidence')),
    el('div', {class: 'bar'},
       el('button', {id: 'download-png', onclick: () => downloadPng(shown, state, opacity.value, INFERNO)}, 'Download this view (PNG)'),
       el('button', {id: 'download-json', onclick: () => downloadJson(shown, state)}, 'Download its analysis (JSON)'),
       el('a', {id: 'view-link', href: linkToView(), target: '_blank', title: 'this link reopens this run, image, method and class'},
          'Link to this view')),
  ];
  if (found.reason) parts.push(el('div', {id: 'reason', class: 'note'}, found.reason));
  parts.push(ood, el('div', {id: 'probabilities'}, ...bars));
  if (found.prototypes) {
    const p = found.prototypes;
    parts.push(el('div', {class: 'note', id: 'prototypes'},
      `This looks like that: the ${found.explained} logit ${p.logit.toFixed(2)} is the sum of ${p.prototypes} `
      + `contributions (similarity x weight; they add up to ${p.sum_of_contributions.toFixed(2)}). The top ${p.top.length}:`));
    for (const item of p.top) {
      parts.push(el('div', {class: 'bar'},
        el('img', {src: item.where, alt: `where prototype ${item.prototype} matches`, style: 'width: 96px; height: 96px; image-rendering: pixelated'}),
        el('img', {src: item.source, alt: `training image of prototype ${item.prototype}`, style: 'width: 96px; height: 96px; image-rendering: pixelated'}),
        `prototype ${item.prototype} (${item.class}): ${item.similarity.toFixed(2)} x ${item.weight.toFixed(2)} = ${item.contribution.toFixed(2)}`));
    }
  }
  if (found.contrastive_map) {
    parts.push(el('div', {class: 'note'}, `Close call: why ${found.predicted} rather than ${found.rival} (red: ${found.predicted}, blue: ${found.rival})`),
               el('div', {class: 'big'}, el('img', {id: 'contrastive', src: found.contrastive_map, alt: 'contrastive map'})));
  }
  const beside = el('div', {id: 'beside'});
  if (state.compare && state.compare !== state.run) {
    beside.append(el('p', {class: 'note', id: 'beside-loading'}, `Loading ${state.compare} on this image (a model's first view takes a few seconds)...`));
  }
  const concepts = el('div', {id: 'concepts', class: 'note'});
  parts.push(beside, concepts);
  detail.replaceChildren(...parts);
  if (state.compare && state.compare !== state.run) besideRun(beside, found);
  if (state.info.kind === 'interpretable_cnn') showConcepts(concepts, found.explained);
}

async function openChannel(layer, channel) {
  Object.assign(state, {layer, channel: String(channel)});
  writeState(state);
  const target = document.getElementById('channel-card');
  if (!target) return;
  target.scrollIntoView({block: 'nearest'});
  await showChannel(target, state);
}

// The class logit split exactly among the concepts found in the CAM map (discovered once per class).
async function showConcepts(target, className) {
  target.textContent = `Discovering the concepts of ${className} in its training images...`;
  const params = new URLSearchParams({run: state.run, source: state.source, class: className});
  try {
    const c = await getJson(`./concepts?${params}`, undefined, (message) => { target.textContent = message; });
    const sum = c.concepts.reduce((total, item) => total + item.contribution, 0);
    target.replaceChildren(
      el('div', {}, `Concepts: the ${c.class} logit ${c.logit.toFixed(2)} = bias ${c.bias.toFixed(2)} + `
        + `${c.concepts.length} concepts ${sum.toFixed(2)} + residual ${c.residual.toFixed(2)} `
        + `(concepts found in ${c.images} of its training images). The top three on this image:`),
      el('div', {class: 'bar'}, ...c.top.map((t) => el('div', {},
        el('img', {src: t.where, alt: `concept ${t.rank}`, style: 'width: 96px; height: 96px; image-rendering: pixelated'}),
        el('div', {}, `concept ${t.rank}: ${t.contribution >= 0 ? '+' : ''}${t.contribution.toFixed(2)}`)))));
  } catch (error) {
    target.textContent = error.message;
  }
}

// The same image, method and class explained by a second run: two models side by side. The pane
// says it is coming while the second model loads.
async function besideRun(target, found) {
  const params = new URLSearchParams({run: state.compare, source: state.source, method: state.method, class: found.explained});
  try {
    const other = await getJson(`./detail?${params}`);
    const box = el('div', {class: 'big'}, el('img', {src: other.image, alt: 'image'}));
    if (other.map) box.append(el('img', {id: 'overlay-beside', src: other.map, alt: `${other.method_title} map`, style: 'opacity: 0.6'}));
    target.replaceChildren(el('h4', {}, `${state.compare}: predicted ${other.predicted} ${percent(other.probability)}`),
              box, el('div', {class: 'note'}, other.reason || `${other.method_title} of ${other.explained}`));
  } catch (error) {
    target.replaceChildren(el('div', {class: 'error'}, `${state.compare}: ${error.message}`));
  }
}

async function uploadFile(file) {
  const message = document.getElementById('upload-message');
  message.textContent = '';
  if (!file) return;
  const form = new FormData();
  form.append('file', file);
  try {
    const {source} = await getJson('./upload', {method: 'POST', body: form, headers: WRITE_HEADERS});
    await openImage(source);
  } catch (error) {
    message.textContent = `${file.name}: ${error.message}`;
  }
}

async function showMeasurements() {
  const target = document.getElementById('measurements');
  const mine = ticket('measurements');
  const found = await getJson(`./measurements?run=${encodeURIComponent(state.run)}`);
  if (stale('measurements', mine)) return;
  const fmt = (value) => (typeof value === 'number' ? (Math.abs(value) < 1.5 ? value.toFixed(4) : value.toFixed(0)) : (value ?? 'n/a'));
  const share = (value) => (typeof value === 'number' ? percent(value) : 'n/a');
  const header = ['run', 'model', 'test accuracy', 'flip + translate TTA', 'ECE', 'calibrated', 'mCA (15 corruptions x 5)',
                  'ECE, corrupted', 'far-OOD AUROC (mean)', 'far-OOD AUROC (worst set)', 'training s'];
  const keys = [null, null, 'accuracy', 'accuracy_tta', 'ece', null, 'mca', 'corrupted_ece', 'far_ood_auroc', 'far_ood_worst', null];
  const rows = found.runs.map((r) => [r.run, r.kind, share(r.accuracy), share(r.accuracy_tta), share(r.ece), r.calibrated ? 'yes' : 'no',
                                      share(r.mca), share(r.corrupted_ece), share(r.far_ood_auroc), share(r.far_ood_worst),
                                      r.train_seconds == null ? 'n/a' : r.train_seconds.toFixed(0)]);
  const measure = found.measure ?? {};
  const parts = [el('table', {id: 'run-figures'}, el('tr', {}, ...header.map((h) => el('th', {}, h))),
    ...rows.map((row, i) => el('tr', {}, ...row.map((v, j) => el('td',
      v === 'n/a' && keys[j] && measure[found.runs[i].run]?.[keys[j]] ? {title: `not measured: ${measure[found.runs[i].run][keys[j]]}`} : {},
      String(v))))))];
  for (const [run, missing] of Object.entries(measure)) {
    const commands = [...new Set(Object.values(missing))];
    if (commands.length) parts.push(el('p', {class: 'note'}, `n/a for ${run} = not measured yet; measure it with: ${commands.join('; ')}`));
  }
  for (const [run, methods] of Object.entries(found.interpretability)) {
    parts.push(el('p', {}, `Explanation quality (${run}; baselines: random, gaussian, sobel)`),
      el('table', {}, el('tr', {}, el('th', {}, 'method'), ...found.columns.map((c) => el('th', {}, c.title))),
         ...Object.entries(methods).map(([name, values]) => el('tr', {}, el('td', {}, name),
           ...found.columns.map((c) => el('td', {}, String(fmt(Array.isArray(values[c.key]) ? values[c.key][0] : values[c.key]))))))));
  }
  for (const [run, frontier] of Object.entries(found.frontiers ?? {})) {
    if (!frontier || !Object.keys(frontier).length) continue;
    if (frontier.error) { parts.push(el('p', {class: 'note'}, frontier.error)); continue; }
    parts.push(el('p', {}, `How ${run}'s recipe was chosen: every candidate on the validation split` +
                           (frontier.rule ? ` (rule: ${frontier.rule})` : '')),
      el('img', {src: frontier.png, alt: `recipe frontier of ${run}`, class: 'frontier'}),
      el('table', {class: 'frontier-table'}, el('tr', {}, ...frontier.header.map((h) => el('th', {}, h))),
         ...frontier.rows.map((row) => el('tr', {}, ...row.map((v) => el('td', {}, String(fmt(v))))))));
  }
  if (!Object.keys(found.interpretability).length) {
    parts.push(el('p', {class: 'note'}, 'Explanation metrics appear here once a report is built into the run folder: '
                                       + 'python -m reports.build --model RUN/model.keras --out RUN/report'));
  }
  target.replaceChildren(...parts);
}
