// Shareable views: the tab's state lives in the page's URL (a reload or a pasted link reopens the
// same view), and the detail view downloads as one PNG and its analysis as JSON.

// The state that makes a view: what a link carries.
export const KEYS = ['run', 'compare', 'filter', 'cls', 'predicted', 'page', 'source', 'method', 'explain', 'panel',
                     'layer', 'channel'];

export function readState(state) {
  const params = new URLSearchParams(window.location.hash.slice(1));
  for (const key of KEYS) {
    if (!params.has(key)) continue;
    state[key] = ['page'].includes(key) ? Number(params.get(key)) || 0 : params.get(key);
  }
  return state;
}

export function writeState(state) {
  const params = new URLSearchParams();
  for (const key of KEYS) {
    const value = state[key];
    if (value !== null && value !== undefined && value !== '' && !(key === 'page' && value === 0)) params.set(key, value);
  }
  // Absolute: the frame's <base href> would otherwise resolve a bare "#..." against the plugin's
  // route folder, not this page.
  const {pathname, search} = window.location;
  window.history.replaceState(null, '', `${pathname}${search}#${params}`);
}

// The link to this very view: the tab's own page with the state in its hash.
export function linkToView() {
  return window.location.href;
}

function download(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function loaded(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = reject;
    image.src = src;
  });
}

// One PNG of what the detail pane shows: the image, the overlay at the chosen opacity, the colour
// bar and a caption naming the run, method, class and probability.
export async function downloadPng(found, state, opacity, colours) {
  const side = 256;
  const captions = [`${state.run}: ${found.method_title} of ${found.explained}`,
                    `${state.source}${found.label ? ` (true ${found.label})` : ''}: predicted ${found.predicted} `
                    + `${(100 * found.probability).toFixed(1)} %${found.calibrated ? ' (calibrated)' : ' (uncalibrated)'}`];
  if (found.ood) captions.push(`${found.ood.in_distribution ? 'in' : 'OUT OF'} distribution (${found.ood.score})`);
  const canvas = document.createElement('canvas');
  canvas.width = side + 24;
  canvas.height = side + 40 + 18 * captions.length + 12;
  const context = canvas.getContext('2d');
  context.fillStyle = 'white';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.imageSmoothingEnabled = false;
  context.drawImage(await loaded(found.image), 12, 12, side, side);
  if (found.map) {
    context.globalAlpha = Number(opacity);
    context.drawImage(await loaded(found.map), 12, 12, side, side);
    context.globalAlpha = 1;
  }
  const bar = context.createLinearGradient(12, 0, 12 + side, 0);
  colours.forEach((colour, i) => bar.addColorStop(i / (colours.length - 1), colour));
  context.fillStyle = bar;
  context.fillRect(12, side + 18, side, 10);
  context.fillStyle = '#212121';
  context.font = '12px sans-serif';
  context.fillText('no evidence', 12, side + 42);
  context.fillText('most evidence', side - 70, side + 42);
  captions.forEach((line, i) => context.fillText(line, 12, side + 62 + 18 * i, side));
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
  download(blob, `${slug(state)}.png`);
}

// The analysis as JSON, without the pictures' data URLs: what was shown, with the link back to it.
export function downloadJson(found, state) {
  const {image, map, contrastive_map: contrastive, ...analysis} = found;
  const record = {view: linkToView(), state: Object.fromEntries(KEYS.map((k) => [k, state[k] ?? null])), analysis};
  download(new Blob([JSON.stringify(record, null, 2)], {type: 'application/json'}), `${slug(state)}.json`);
}

function slug(state) {
  return [state.run, state.source, state.method, state.explain].filter(Boolean).join('_').replace(/[^A-Za-z0-9_.-]+/g, '-');
}
