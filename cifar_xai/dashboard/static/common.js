// What every view of the Explanations tab shares: building elements, asking the plugin's routes,
// and how numbers and test images are written.

export function el(tag, attributes = {}, ...children) {
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
export const WRITE_HEADERS = {'X-Cifar-Xai': '1'};

// A route answers 202 while its long job (concept discovery, channel statistics, a visualisation)
// is running: ask again every 2 s, telling `onPending` what the server said.
export async function getJson(url, options, onPending) {
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
export function percent(value) {
  return `${(100 * value).toFixed(1)}\u00a0%`;
}

// Test images are numbered in tfds' order (test:N); samples/README numbers test_batch.bin's.
export function testName(index, fileIndex) {
  return `test image ${index} (tfds order${fileIndex == null ? '' : `; #${fileIndex} in test_batch.bin`})`;
}

export const pixelated = (size) => `width: ${size}px; height: ${size}px; image-rendering: pixelated`;

// Views answer asynchronously: a slow answer to an older click must not replace a newer view.
// `const t = ticket('detail')` before asking, `if (stale('detail', t)) return;` after each answer.
const tickets = {};
export function ticket(view) {
  tickets[view] = (tickets[view] || 0) + 1;
  return tickets[view];
}
export function stale(view, number) {
  return tickets[view] !== number;
}
