// Demo mode: `index.html#demo=NAME` has the core write a small sample image of that format
// in the worker and opens it as if its files had been dropped, so a documentation page can
// link to a live layout of every format. The empty page lists the demos (the gallery);
// `#demos` shows that list.

import { $, el } from './dom.js';

let ctx = null; // { client, showError, busy, open(files, demo) }
let opening = 0;

export function init(c) {
  ctx = c;
  window.addEventListener('hashchange', fromHash);
  loadGallery();
  fromHash();
}

function wanted() {
  const m = /^#demo=([A-Za-z0-9_-]+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

async function fromHash() {
  if (location.hash === '#demos') {
    $('gallery').scrollIntoView({ block: 'start' });
    return;
  }
  const name = wanted();
  if (!name) return;
  const seq = ++opening;
  ctx.busy(`Writing the ${name} sample…`);
  try {
    const d = await ctx.client.call({ type: 'demo', name });
    if (seq !== opening) return;
    await ctx.open(d.files, d);
  } catch (err) {
    if (seq !== opening) return;
    ctx.busy(null);
    ctx.showError(err, 'No such demo');
  }
}

async function loadGallery() {
  const list = $('gallery-list');
  try {
    const demos = await ctx.client.call({ type: 'demos' });
    list.replaceChildren(
      ...demos.map((d) =>
        el('li', { class: 'demo-item', title: d.about },
          el('a', { href: `#demo=${d.name}`, class: 'demo-link', dataset: { demo: d.name } }, d.name),
          el('span', { class: 'muted small' }, d.title),
        ),
      ),
    );
    list.setAttribute('aria-busy', 'false');
  } catch (err) {
    list.replaceChildren(el('li', { class: 'muted' }, `The samples could not be listed: ${err.message}`));
  }
}

/** Say on the open view that it is a sample, and which; or hide the note. */
export function banner(d) {
  const box = $('demo-banner');
  box.hidden = !d;
  $('view').dataset.demo = d ? d.name : '';
  if (!d) return;
  $('demo-banner-text').replaceChildren(
    el('strong', {}, `Sample: ${d.title}. `),
    d.about,
    ' ',
    el('span', { class: 'muted' }, 'diskscope wrote these files in this page to show the format; open your own image to inspect it.'),
  );
}

/** Forget the demo in the address, so reloading does not reopen it. */
export function leave() {
  opening++;
  if (wanted()) history.replaceState(null, '', location.pathname + location.search);
}
