// The Explanations tab: one ES module, no build step, no network fetch beyond the plugin's own
// routes (relative to the plugin's frame: TensorBoard sets <base href="plugin/<name>/">).

const FILTERS = [
  ['all', 'all'], ['correct', 'correct'], ['wrong', 'wrong'], ['least_confident', 'least confident'],
  ['flagged_ood', 'flagged out-of-distribution'], ['close_calls', 'close calls'],
];
// The overlay's colours (matplotlib's inferno), for the colour bar.
const INFERNO = ['#000004', '#320a5e', '#781c6d', '#bc3754', '#ed6925', '#fbb61a', '#fcffa4'];

const state = {run: null, info: null, filter: 'all', cls: '', page: 0, source: null, method: 'cam', explain: '', compare: ''};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'style') node.style.cssText = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Requests that change something carry this header: a page of another site cannot send it.
const WRITE_HEADERS = {'X-Cifar-Xai': '1'};

// A route answers 202 while its long job (concept discovery, channel statistics) is running:
// ask again every 2 s, telling `onPending` what the server said.
async function getJson(url, options, onPending) {
  for (;;) {
    const response = await fetch(url, options);
    const body = await response.json();
    if (response.status === 202) {
      if (onPending) onPending(body.pending);
      await new Promise((resolve) => setTimeout(resolve, 2000));
      continue;
    }
    if (!response.ok) throw new Error(body.error || `${response.status}`);
    return body;
  }
}

// A no-break space: "99.1 %" never wraps with the "%" alone on a line.
function percent(value) {
  return `${(100 * value).toFixed(1)}\u00a0%`;
}

// Test images are numbered in tfds' order (test:N); samples/README numbers test_batch.bin's.
function testName(index, fileIndex) {
  return `test image ${index} (tfds order${fileIndex == null ? '' : `; #${fileIndex} in test_batch.bin`})`;
}

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
  .probability { display: flex; align-items: center; gap: 6px; }
  .probability .fill { height: 10px; background: #1976d2; }
  .error { color: #b71c1c; } .note { color: #616161; }
  table { border-collapse: collapse; } td, th { border-bottom: 1px solid #e0e0e0; padding: 2px 8px; }
  img.frontier { max-width: 560px; display: block; margin: 6px 0; }
`;

export async function render() {
  document.head.append(el('style', {}, STYLE));
  const runSelect = el('select', {id: 'run', onchange: () => chooseRun(runSelect.value)});
  const filterSelect = el('select', {id: 'filter', onchange: () => { state.filter = filterSelect.value; state.page = 0; showGallery(); }},
    ...FILTERS.map(([value, label]) => el('option', {value}, label)));
  const classSelect = el('select', {id: 'class-filter', onchange: () => { state.cls = classSelect.value; state.page = 0; showGallery(); }});
  const upload = el('input', {type: 'file', id: 'upload', accept: 'image/*', onchange: () => uploadFile(upload.files[0])});
  const compareSelect = el('select', {id: 'compare', onchange: () => { state.compare = compareSelect.value; if (state.source) showDetail(); }});
  document.body.append(
    el('div', {class: 'bar'}, 'Run ', runSelect, 'beside ', compareSelect, 'Show ', filterSelect, 'Class ', classSelect,
       'Your own image ', upload, el('span', {id: 'upload-message', class: 'error'})),
    el('div', {class: 'layout'},
       el('div', {}, el('div', {id: 'gallery', class: 'gallery'}), el('div', {id: 'pager', class: 'bar'})),
       el('div', {id: 'detail'})),
    el('h3', {}, 'Measurements'), el('div', {id: 'measurements'}));
  const {runs} = await getJson('./runs');
  for (const run of runs) runSelect.append(el('option', {value: run.name}, run.name));
  compareSelect.append(el('option', {value: ''}, 'no other run'), ...runs.map((run) => el('option', {value: run.name}, run.name)));
  if (runs.length) await chooseRun(runs[0].name);
}

async function chooseRun(name) {
  state.run = name;
  state.page = 0;
  state.info = await getJson(`./run?run=${encodeURIComponent(name)}`);
  const classSelect = document.getElementById('class-filter');
  classSelect.replaceChildren(el('option', {value: ''}, 'every class'),
    ...state.info.classes.map((c) => el('option', {value: c}, c)));
  const usable = state.info.methods.filter((m) => m.applicable);
  state.method = usable.length ? usable[0].name : 'cam';
  await Promise.all([showGallery(), showMeasurements()]);
}

async function showGallery() {
  const params = new URLSearchParams({run: state.run, filter: state.filter, page: state.page});
  if (state.cls) params.set('class', state.cls);
  const gallery = document.getElementById('gallery');
  let page;
  try {
    page = await getJson(`./gallery?${params}`);
  } catch (error) {
    gallery.replaceChildren(el('span', {class: 'note'}, error.message));
    return;
  }
  gallery.replaceChildren(...page.items.map((item) => el('div', {
    class: `thumb${item.correct ? '' : ' wrong'}${item.flagged ? ' flagged' : ''}`, 'data-index': item.index,
    title: `${testName(item.index, item.file_index)}: true ${item.label}`, onclick: () => openImage(`test:${item.index}`),
  }, el('img', {src: `./image?index=${item.index}`, alt: `test image ${item.index}`}),
     `${item.predicted} ${percent(item.confidence)}`)));
  const pager = document.getElementById('pager');
  pager.replaceChildren(
    el('button', {onclick: () => { state.page -= 1; showGallery(); }, ...(page.page === 0 ? {disabled: ''} : {})}, '‹'),
    `page ${page.page + 1} of ${page.pages} (${page.total} images${page.calibrated ? '' : '; confidences uncalibrated'})`,
    el('button', {onclick: () => { state.page += 1; showGallery(); }, ...(page.page + 1 >= page.pages ? {disabled: ''} : {})}, '›'),
    el('span', {class: 'note'}, 'red border: wrong; dashed orange: flagged out-of-distribution'));
}

async function openImage(source) {
  state.source = source;
  state.explain = '';
  await showDetail();
}

async function showDetail() {
  const detail = document.getElementById('detail');
  const params = new URLSearchParams({run: state.run, source: state.source, method: state.method});
  if (state.explain) params.set('class', state.explain);
  let found;
  try {
    found = await getJson(`./detail?${params}`);
  } catch (error) {
    detail.replaceChildren(el('div', {class: 'error'}, error.message));
    return;
  }
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
  const parts = [
    el('div', {class: 'bar'}, `${state.source.startsWith('test:') ? testName(state.source.slice(5), found.file_index) : state.source}`
       + `${found.label ? ` (true ${found.label})` : ''}: predicted `,
       el('b', {id: 'predicted'}, found.predicted), ` ${percent(found.probability)}${found.calibrated ? ' (calibrated)' : ' (uncalibrated)'}`),
    el('div', {class: 'bar'}, 'Method ', methodSelect, 'Explain ', classSelect, 'Opacity ', opacity),
    el('div', {class: 'big'}, el('img', {id: 'image', src: found.image, alt: 'image'}), overlay),
    el('div', {class: 'colourbar', title: 'map value, 0 (left) to 1 (right)'}),
    el('div', {class: 'bar note'}, 'no evidence', el('span', {style: 'margin-left: auto'}, 'most evidence')),
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
  if (state.compare && state.compare !== state.run) parts.push(await besideRun(found));
  const concepts = el('div', {id: 'concepts', class: 'note'});
  parts.push(concepts);
  detail.replaceChildren(...parts);
  if (state.info.kind === 'interpretable_cnn') showConcepts(concepts, found.explained);
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

// The same image, method and class explained by a second run: two models side by side.
async function besideRun(found) {
  const params = new URLSearchParams({run: state.compare, source: state.source, method: state.method, class: found.explained});
  try {
    const other = await getJson(`./detail?${params}`);
    const box = el('div', {class: 'big'}, el('img', {src: other.image, alt: 'image'}));
    if (other.map) box.append(el('img', {id: 'overlay-beside', src: other.map, alt: `${other.method_title} map`, style: 'opacity: 0.6'}));
    return el('div', {id: 'beside'}, el('h4', {}, `${state.compare}: predicted ${other.predicted} ${percent(other.probability)}`),
              box, el('div', {class: 'note'}, other.reason || `${other.method_title} of ${other.explained}`));
  } catch (error) {
    return el('div', {id: 'beside', class: 'error'}, `${state.compare}: ${error.message}`);
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
  const found = await getJson(`./measurements?run=${encodeURIComponent(state.run)}`);
  const fmt = (value) => (typeof value === 'number' ? (Math.abs(value) < 1.5 ? value.toFixed(4) : value.toFixed(0)) : (value ?? 'n/a'));
  const header = ['run', 'model', 'test accuracy', 'flip + translate TTA', 'ECE', 'calibrated', 'mCA', 'training s'];
  const rows = found.runs.map((r) => [r.run, r.kind, r.accuracy, r.accuracy_tta, r.ece, r.calibrated ? 'yes' : 'no', r.mca, r.train_seconds]);
  const parts = [el('table', {id: 'run-figures'}, el('tr', {}, ...header.map((h) => el('th', {}, h))),
                    ...rows.map((row) => el('tr', {}, ...row.map((v) => el('td', {}, String(fmt(v)))))))];
  for (const [run, methods] of Object.entries(found.interpretability)) {
    parts.push(el('p', {}, `Explanation quality (${run}; baselines: random, gaussian, sobel)`),
      el('table', {}, el('tr', {}, el('th', {}, 'method'), ...found.columns.map((c) => el('th', {}, c.title))),
         ...Object.entries(methods).map(([name, values]) => el('tr', {}, el('td', {}, name),
           ...found.columns.map((c) => el('td', {}, String(fmt(Array.isArray(values[c.key]) ? values[c.key][0] : values[c.key]))))))));
  }
  for (const [run, frontier] of Object.entries(found.frontiers ?? {})) {
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
