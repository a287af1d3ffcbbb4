// The rater's page of a cifar-xai study. A classic script (no modules, no build step), so the
// same file runs served by the Explanations tab and opened from a bundle folder as file://.
// window.STUDY (study.js, written by cifar_xai/study/page.py) holds every rater slot's questions;
// answers go to the tab's server (mode "server") or stay in this browser until downloaded
// (mode "bundle"). Nothing about the model is shown but what each question shows.
(function () {
  'use strict';
  const S = window.STUDY;
  const app = document.getElementById('app');
  const params = new URLSearchParams(location.search);
  const WRITE_HEADERS = {'Content-Type': 'application/json', 'X-Cifar-Xai': '1'};
  let rater = null, slot = null, plan = [], done = new Set(), started = 0;
  let painting = null;   // a stroke over the mask grid: 1 paints, 0 erases, null none
  document.addEventListener('pointerup', () => { painting = null; });

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (value !== false && value != null) node.setAttribute(key, value === true ? '' : value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }
  const file = (name) => S.files + encodeURIComponent(name);
  const key = (trial, task) => `${trial}/${task}`;

  // ---- where answers go -------------------------------------------------------------------------
  const storeKey = () => `cifar-xai-study:${S.name}:${rater}`;
  const stored = () => JSON.parse(localStorage.getItem(storeKey()) || '[]');

  async function post(route, body) {
    const response = await fetch(route, {method: 'POST', headers: WRITE_HEADERS, body: JSON.stringify(body)});
    const answer = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
    if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
    return answer;
  }

  // A bundle's rater without &slot=N gets a row of the Latin square from their id (the same id,
  // the same row, on any machine).
  function slotFromId(id) {
    let hash = 0;
    for (const c of id) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
    return hash % S.raters;
  }

  async function join(id) {
    if (S.mode === 'server') {
      const joined = await post('join', {study: S.name, rater: id});
      return {slot: joined.slot, answered: joined.answered};
    }
    rater = id;
    const wanted = params.get('slot');
    const mine = stored();
    const chosen = mine.length ? mine[0].slot : (wanted !== null ? Number(wanted) : slotFromId(id));
    if (!(Number.isInteger(chosen) && chosen >= 0 && chosen < S.raters)) {
      throw new Error(`slot ${wanted} is out of range: this study has ${S.raters} (0-${S.raters - 1})`);
    }
    return {slot: chosen, answered: mine.map((a) => [a.trial, a.task])};
  }

  async function record(answer) {
    const full = {...answer, seconds: Math.round((performance.now() - started) / 100) / 10};
    if (S.mode === 'server') {
      await post('answer', {study: S.name, rater, ...full});
    } else {
      const mine = stored();
      mine.push({...full, rater, slot});
      localStorage.setItem(storeKey(), JSON.stringify(mine));
    }
    done.add(key(answer.trial, answer.task));
  }

  // ---- screens ----------------------------------------------------------------------------------
  function screen(...children) {
    app.replaceChildren(...children);
    window.scrollTo(0, 0);
  }

  function welcome(message) {
    const input = el('input', {type: 'text', id: 'rater', placeholder: 'your id', maxlength: '40',
                               value: params.get('rater') || ''});
    const start = el('button', {id: 'start', onclick: () => begin(input.value.trim())}, 'Start');
    input.addEventListener('keydown', (event) => { if (event.key === 'Enter') start.click(); });
    screen(
      el('h1', {}, 'Can you read what a model sees?'),
      el('p', {}, 'A neural network sorts small photos into ten classes (airplane, automobile, bird, cat, deer, dog, ',
         'frog, horse, ship, truck). For each photo you will be asked:'),
      el('ol', {},
         el('li', {}, 'which of four classes the network will answer. Some photos come with a heat map for each ',
            'class: where the network finds evidence for it (red = strong, blue = none). Others have none: then ',
            'just make your best guess.'),
         el('li', {}, 'shown the network\u2019s answer, whether it is right, and how sure you are.'),
         el('li', {}, 'for photos with heat maps, whether the highlighted region covers the object (and, if you ',
            'like, paint the object yourself).')),
      el('p', {}, 'At the end you name ten pictures the network drew of its own classes.'),
      el('p', {class: 'note'}, 'There are no trick questions and no time limit. You can stop at any point and come ',
         'back with the same id: you continue where you stopped.'),
      el('p', {}, el('label', {for: 'rater'}, 'Your id (letters, digits, - or _): '), input, ' ', start),
      el('p', {id: 'message', class: 'error'}, message || ''));
    input.focus();
  }

  async function begin(id) {
    if (!/^[A-Za-z0-9_-]{1,40}$/.test(id)) {
      welcome('Please type an id of 1-40 letters, digits, - or _ (no spaces).');
      return;
    }
    try {
      const joined = await join(id);
      rater = id;
      slot = joined.slot;
      plan = S.plans[slot];
      done = new Set(joined.answered.map(([trial, task]) => key(trial, task)));
      next();
    } catch (err) {
      welcome(err.message);
    }
  }

  function next() {
    const position = plan.findIndex(([trial, task]) => !done.has(key(trial, task)));
    if (position < 0) return finished();
    const [trial, task, condition] = plan[position];
    started = performance.now();
    Object.assign(app.dataset, {trial, task, position: String(position)});   // for scripted raters and styling
    const head = [
      el('div', {id: 'progress', class: 'note'}, `Question ${position + 1} of ${plan.length} \u00b7 rater ${rater}`),
      el('div', {class: 'progress'}, el('div', {style: `width: ${(100 * position / plan.length).toFixed(1)}%`}))];
    const body = {simulation, trust, localisation, recognition}[task](trial, condition);
    screen(...head, ...body, el('p', {id: 'message', class: 'error'}));
  }

  // Sends one answer; on failure says so and keeps the question on screen to try again.
  async function answer(payload) {
    for (const button of app.querySelectorAll('button')) button.disabled = true;
    try {
      await record(payload);
      next();
    } catch (err) {
      for (const button of app.querySelectorAll('button')) button.disabled = false;
      document.getElementById('message').textContent = `Not saved: ${err.message}. Try again.`;
    }
  }

  const hasMaps = (condition) => condition && condition !== 'none';
  const mapOf = (trial, condition, className) =>
    file(S.trials[trial].maps[condition][S.trials[trial].choices.indexOf(className)]);
  const photo = (trial, cls = 'shown') => el('img', {class: cls, src: file(S.trials[trial].image), alt: 'the photo'});
  const legend = () => el('div', {class: 'key'}, 'no evidence', el('i'), 'strong evidence');

  function simulation(trial, condition) {
    const t = S.trials[trial];
    const choices = t.choices.map((name) => el('button', {class: 'choice', 'data-class': name,
                                                           onclick: () => answer({trial, task: 'simulation', choice: name})},
      hasMaps(condition) ? el('img', {class: 'small', src: mapOf(trial, condition, name), alt: `heat map for ${name}`}) : null,
      el('span', {}, name)));
    return [
      el('p', {class: 'prompt', id: 'prompt'}, 'Which class will the network answer for this photo?'),
      el('div', {class: 'row'}, el('figure', {}, photo(trial), 'the photo')),
      hasMaps(condition) ? el('p', {class: 'note'}, 'Under each class: where the network finds evidence for it.') : null,
      hasMaps(condition) ? legend() : null,
      el('div', {class: 'row'}, ...choices)];
  }

  function trust(trial, condition) {
    const t = S.trials[trial];
    let right = null, confidence = null;
    const nextButton = el('button', {id: 'next', disabled: true,
                                     onclick: () => answer({trial, task: 'trust', right, confidence})}, 'Next');
    const pick = (group, button) => {
      for (const other of app.querySelectorAll(`.${group}`)) other.classList.toggle('on', other === button);
      nextButton.disabled = right === null || confidence === null;
    };
    const yes = el('button', {id: 'right-yes', class: 'verdict', onclick: () => { right = true; pick('verdict', yes); }}, 'Yes, right');
    const no = el('button', {id: 'right-no', class: 'verdict', onclick: () => { right = false; pick('verdict', no); }}, 'No, wrong');
    const levels = ['1 guessing', '2 unsure', '3 fairly sure', '4 certain'].map((label, k) => {
      const button = el('button', {class: 'confidence', 'data-value': String(k + 1),
                                   onclick: () => { confidence = k + 1; pick('confidence', button); }}, label);
      return button;
    });
    return [
      el('p', {class: 'prompt', id: 'prompt'}, 'The network answered: ', el('b', {id: 'predicted'}, t.predicted),
         '. Is it right?'),
      el('div', {class: 'row'}, el('figure', {}, photo(trial), 'the photo'),
         hasMaps(condition) ? el('figure', {}, el('img', {class: 'shown', src: mapOf(trial, condition, t.predicted),
                                                          alt: `heat map for ${t.predicted}`}),
                                 `evidence for ${t.predicted}`) : null),
      el('div', {class: 'row'}, yes, no),
      el('p', {}, 'How sure are you?'), el('div', {class: 'row'}, ...levels),
      el('div', {class: 'row'}, nextButton)];
  }

  function localisation(trial, condition) {
    const t = S.trials[trial];
    let covers = null;
    const cells = new Array(S.grid * S.grid).fill(0);
    const nextButton = el('button', {id: 'next', disabled: true, onclick: () => answer(
      {trial, task: 'localisation', covers, mask: cells.some((c) => c) ? cells : null})}, 'Next');
    const options = [['yes', 'Yes'], ['partly', 'Partly'], ['no', 'No']].map(([value, label]) => {
      const button = el('button', {class: 'covers', 'data-value': value, onclick: () => {
        covers = value;
        for (const other of app.querySelectorAll('.covers')) other.classList.toggle('on', other === button);
        nextButton.disabled = false;
      }}, label);
      return button;
    });
    // Painting: press on a square and drag; the first square decides whether the stroke paints or erases.
    const grid = el('div', {class: 'cells', style: `grid-template-columns: repeat(${S.grid}, 1fr)`});
    cells.forEach((_, k) => {
      const cell = el('div', {class: 'cell', 'data-cell': String(k)});
      const set = () => { cells[k] = painting; cell.classList.toggle('on', painting === 1); };
      cell.addEventListener('pointerdown', (event) => {
        event.preventDefault();
        cell.releasePointerCapture(event.pointerId);   // a finger's stroke goes on over the next squares
        painting = cells[k] ? 0 : 1;
        set();
      });
      cell.addEventListener('pointerenter', () => { if (painting !== null) set(); });
      grid.append(cell);
    });
    return [
      el('p', {class: 'prompt', id: 'prompt'}, 'Does the highlighted region cover the object?'),
      el('div', {class: 'row'},
         el('figure', {}, el('img', {class: 'shown', src: mapOf(trial, condition, t.predicted),
                                     alt: `heat map for ${t.predicted}`}), `evidence for ${t.predicted}`),
         el('figure', {}, el('div', {class: 'grid'}, photo(trial), grid), 'optional: paint the object')),
      legend(),
      el('div', {class: 'row'}, ...options),
      el('p', {class: 'note'}, 'If you like, paint the object on the right-hand photo: press and drag over the ',
         'squares (press a painted square to erase).'),
      el('div', {class: 'row'}, nextButton)];
  }

  function recognition(trial) {
    const buttons = S.classes.map((name) => el('button', {class: 'choice', 'data-class': name,
                                                         onclick: () => answer({trial, task: 'recognition', choice: name})},
                                               el('span', {}, name)));
    return [
      el('p', {class: 'prompt', id: 'prompt'}, 'The network drew this picture to show what one of its classes looks ',
         'like to it. Which class?'),
      el('div', {class: 'row'}, el('img', {class: 'shown', src: file(S.recognition[trial]), alt: 'a class picture'})),
      el('div', {class: 'row'}, ...buttons)];
  }

  function finished() {
    Object.assign(app.dataset, {trial: '', task: 'done', position: String(plan.length)});
    const parts = [el('h1', {id: 'done'}, 'Thank you: that was every question.')];
    if (S.mode === 'bundle') {
      const lines = stored().map((a) => JSON.stringify(a)).join('\n') + '\n';
      const link = el('a', {id: 'download', download: `${rater}.jsonl`,
                            href: URL.createObjectURL(new Blob([lines], {type: 'application/jsonl'}))},
                      'Download my answers');
      parts.push(el('p', {}, 'Please ', link, ' and send the file to whoever asked you to take the study.'));
    } else {
      parts.push(el('p', {}, 'Your answers are saved. You can close this page.'));
    }
    screen(...parts);
  }

  if (!S) {
    app.replaceChildren(el('p', {class: 'error'}, 'This page has no study: open it from the Explanations tab or a bundle.'));
  } else if (params.get('rater')) {
    begin(params.get('rater'));
  } else {
    welcome();
  }
})();
