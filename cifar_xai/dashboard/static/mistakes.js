// Mistakes: the run's confusion matrix on the test split. Every cell opens the gallery of the
// images behind it (true class x predicted class), as the What-If Tool's matrix does.
import {el, getJson, percent, stale} from './common.js';

export async function showConfusion(target, run, onCell, mine) {
  target.replaceChildren(el('p', {class: 'note'}, 'Predicting the test split for the confusion matrix...'));
  let found;
  try {
    found = await getJson(`./confusion?run=${encodeURIComponent(run)}`, undefined, (message) => {
      if (!stale('mistakes', mine)) target.replaceChildren(el('p', {class: 'note'}, message));
    });
  } catch (error) {
    if (!stale('mistakes', mine)) target.replaceChildren(el('p', {class: 'error'}, error.message));
    return;
  }
  if (stale('mistakes', mine)) return;
  const header = el('tr', {}, el('th', {}, 'true \\ predicted'), ...found.classes.map((c) => el('th', {class: 'rotate'}, c)),
                    el('th', {}, 'recall'));
  const rows = found.counts.map((row, i) => el('tr', {},
    el('th', {}, found.classes[i]),
    ...row.map((count, j) => {
      const share = found.row_normalised[i][j];
      const colour = i === j ? `rgba(25, 118, 210, ${share})` : `rgba(211, 47, 47, ${Math.min(1, 4 * share)})`;
      return el('td', {class: 'cell', 'data-true': found.classes[i], 'data-predicted': found.classes[j],
                       title: `${count} test images of ${found.classes[i]} predicted ${found.classes[j]} (${percent(share)} of the row); click to see them`,
                       style: `background: ${colour}; color: ${share > 0.5 ? 'white' : 'inherit'}`,
                       onclick: () => onCell(found.classes[i], found.classes[j])}, String(count));
    }),
    el('td', {}, found.recall[i] == null ? 'n/a' : percent(found.recall[i]))));
  const precision = el('tr', {}, el('th', {}, 'precision'),
    ...found.precision.map((p) => el('td', {}, p == null ? 'n/a' : percent(p))), el('td', {}));
  target.replaceChildren(
    el('p', {}, `Confusion matrix of ${found.images} test images (accuracy ${percent(found.accuracy)}). Rows: the true class; `
       + 'columns: what the model predicted. Blue: right; red: wrong, darker = a larger share of the row. Click a cell to '
       + 'see its images in the gallery.'),
    el('table', {id: 'confusion', class: 'confusion'}, header, ...rows, precision));
}
