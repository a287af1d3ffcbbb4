// Inside the network: for one image, every block's most responsive channels (stem to the CAM
// map); click a channel for its card (what it responds to across the test split).
import {el, getJson, pixelated, stale, testName, ticket} from './common.js';

export async function showLayers(target, state, onChannel, isStale) {
  target.replaceChildren(el('p', {class: 'note'}, 'Reading every layer...'));
  const params = new URLSearchParams({run: state.run, source: state.source});
  let found;
  try {
    found = await getJson(`./layers?${params}`);
  } catch (error) {
    if (!isStale()) target.replaceChildren(el('p', {class: 'error'}, error.message));
    return;
  }
  if (isStale()) return;
  const parts = [el('p', {}, 'Inside the network, from the first layer (left, top) to the last: each block\'s channels that '
    + 'respond most to this image, bright where the channel fires (one colour scale per block), with its mean activation. '
    + 'Click a channel to see what it responds to across the test images.')];
  for (const block of found.blocks) {
    parts.push(el('div', {class: 'block'},
      el('div', {class: 'block-title'}, `${block.title}: ${block.size[0]}\u00d7${block.size[1]}, ${block.channels} channels`),
      el('div', {class: 'bar'}, ...block.top.map((item) => el('div', {
        class: 'channel', 'data-layer': block.layer, 'data-channel': item.channel,
        title: `${block.layer} channel ${item.channel}: mean activation ${item.activation.toFixed(3)}; click for its card`,
        onclick: () => onChannel(block.layer, item.channel)},
        el('img', {src: item.map, alt: `${block.layer} channel ${item.channel}`, style: pixelated(64)}),
        el('div', {}, `#${item.channel}: ${item.activation.toFixed(2)}`))))));
  }
  parts.push(el('div', {class: 'block'}, el('div', {class: 'block-title'}, found.filters_note),
    el('div', {class: 'bar'}, ...found.filters.map((src, i) => el('img', {src, alt: `stem filter ${i}`, style: pixelated(24)})))));
  const classes = el('div', {id: 'class-images', class: 'block'},
    el('button', {id: 'show-class-images', onclick: () => showClassImages(classes, state.run)},
       'What does each class look like to the model? (a few minutes, once per run)'));
  parts.push(el('div', {id: 'channel-card'}), classes);
  target.replaceChildren(...parts);
}

async function showClassImages(target, run) {
  const title = 'What each class looks like to the model (images optimised to raise each class\'s score; '
    + 'docs/explanations.md says how, and how often another model recognises them)';
  try {
    const found = await getJson(`./class_images?run=${encodeURIComponent(run)}`, undefined,
      (message) => { target.replaceChildren(el('div', {class: 'block-title'}, title), el('span', {class: 'note'}, message)); });
    target.replaceChildren(el('div', {class: 'block-title'}, title), el('div', {class: 'bar'},
      ...found.images.map((src, i) => el('figure', {}, el('img', {src, alt: `${found.classes[i]} visualised`, style: pixelated(96)}),
                                         el('figcaption', {}, found.classes[i])))));
  } catch (error) {
    target.replaceChildren(el('div', {class: 'block-title'}, title), el('span', {class: 'error'}, error.message));
  }
}

// A channel's card: the test images that excite it most (each with where it fires), its
// visualisation, and at the CAM map what it votes for and how much of this image's score it carries.
export async function showChannel(target, state) {
  const mine = ticket('channel');
  target.replaceChildren(el('p', {class: 'note'}, `Channel ${state.channel} of ${state.layer}...`));
  const params = new URLSearchParams({run: state.run, layer: state.layer, channel: state.channel});
  if (state.source) params.set('source', state.source);
  if (state.explain) params.set('class', state.explain);
  let card;
  try {
    card = await getJson(`./channel?${params}`, undefined, (message) => {
      if (!stale('channel', mine)) target.replaceChildren(el('p', {class: 'note'}, message));
    });
  } catch (error) {
    if (!stale('channel', mine)) target.replaceChildren(el('p', {class: 'error'}, error.message));
    return;
  }
  if (stale('channel', mine)) return;
  const examples = el('div', {class: 'bar', id: 'examples'}, ...card.examples.map((item) => el('figure', {
      class: 'example', title: `${testName(item.index, item.file_index)}, true ${item.label}: mean activation ${item.activation.toFixed(3)}`},
    el('div', {class: 'pair'},
      el('img', {src: item.image, alt: `test image ${item.index}`, style: pixelated(64)}),
      el('img', {src: item.where, alt: `where channel ${card.channel} fires on test image ${item.index}`, style: `${pixelated(64)}; opacity: 0.85`})),
    el('figcaption', {}, `${item.label} ${item.activation.toFixed(2)}`))));
  const picture = el('div', {id: 'channel-image', class: 'note'}, 'Optimising an image for this channel (about a minute, once)...');
  const parts = [
    el('h4', {}, `${card.title}, channel ${card.channel}`),
    el('p', {}, `The ${card.examples.length} test images (of ${card.images}) that make this channel fire most, each beside where `
      + `it fires. Across all of them its mean activation is ${card.distribution.mean.toFixed(3)} (median ${card.distribution.p50.toFixed(3)}, `
      + `99th percentile ${card.distribution.p99.toFixed(3)}, most ${card.distribution.max.toFixed(3)}).`),
    examples, picture];
  if (card.votes) {
    const largest = Math.max(...Object.values(card.votes).map(Math.abs)) || 1;
    parts.push(el('p', {}, 'What it votes for: its weight in each class\'s score, per unit of its mean activation (exact: under '
      + 'Global Average Pooling a class score is the sum over channels of mean activation \u00d7 weight, plus a bias).'),
      el('div', {id: 'votes'}, ...Object.entries(card.votes).map(([name, weight]) => el('div', {class: 'probability'},
        el('span', {style: 'width: 72px'}, name),
        el('div', {class: 'fill', style: `width: ${Math.round(120 * Math.abs(weight) / largest)}px; background: ${weight >= 0 ? '#1976d2' : '#d32f2f'}`}),
        `${weight >= 0 ? '+' : ''}${weight.toFixed(3)}`))));
    if (card.share) {
      const s = card.share;
      parts.push(el('p', {id: 'share'}, `On this image it carries ${s.channel >= 0 ? '+' : ''}${s.channel.toFixed(3)} of the ${s.class} score `
        + `(mean activation ${s.activation.toFixed(3)} \u00d7 weight); all ${s.of} channels together carry ${s.all_channels.toFixed(2)}; `
        + `it ranks ${s.rank} of ${s.of}.`));
    }
  } else {
    parts.push(el('p', {class: 'note', id: 'votes'}, card.votes_reason));
  }
  target.replaceChildren(...parts);
  try {
    const found = await getJson(`./channel_image?${new URLSearchParams({run: state.run, layer: state.layer, channel: state.channel})}`,
                                undefined, (message) => { picture.textContent = message; });
    if (stale('channel', mine)) return;
    picture.replaceChildren(el('img', {src: found.image, alt: `channel ${card.channel} visualised`, style: pixelated(144)}),
      el('div', {}, `An image optimised to make this channel fire (${found.method}); read it with the examples above: `
        + 'either alone can mislead.'));
  } catch (error) {
    picture.textContent = error.message;
  }
}
