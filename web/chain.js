// The backing chain as a diagram: one box per file, top image first, an arrow for each
// "backed by" link labelled with the name the header stores; the companion files a layer
// names (raw data file, add-cow image file, VMDK extents) hang beside it. A missing file is
// a dashed box with a button to add it (the page then reopens with it, keeping the rest);
// a loop is an arrow back to the layer named again.

import { $, el } from './dom.js';
import { hex, human } from './format.js';

const fmtOffset = (v) => (typeof v === 'number' ? `${v.toLocaleString('en-US')} (${hex(v)})` : String(v));
const baseName = (n) => n.split(/[\\/]/).pop();

function addButton(name, primary = true) {
  return el('button', { type: 'button', class: `btn small ${primary ? 'primary ' : ''}add-missing`, onclick: () => $('add-input').click() }, `Add ${baseName(name)}…`);
}

function companions(l) {
  const list = (l.companions || []).map((c) =>
    c.found
      ? el('li', { class: 'companion found' }, el('span', { class: 'muted' }, `${c.role}: `), el('span', { class: 'layer-name' }, c.found))
      : el('li', { class: 'companion missing', dataset: { missing: c.name } },
          el('span', { class: 'muted' }, `${c.role}: `), el('span', { class: 'layer-name' }, baseName(c.name)), el('span', { class: 'node-flag' }, ' missing '), addButton(c.name)),
  );
  return list.length ? el('ul', { class: 'companions' }, ...list) : null;
}

function node(l, i) {
  return el('li', { class: `node layer${i === 0 ? ' top' : ''}`, dataset: { layer: String(i) } },
    el('div', { class: 'node-head' },
      el('span', { class: 'layer-name' }, l.filename),
      el('span', { class: 'badge format' }, l.format.toUpperCase()),
    ),
    el('div', { class: 'muted small' }, `${human(l['virtual-size'])} virtual · ${human(l['file-size'])} file`),
    el('div', { class: 'layer-role muted small' }, i === 0 ? 'the image' : `backing file ${i}`),
    companions(l),
  );
}

function link(label, kind = '') {
  return el('li', { class: `chain-link ${kind}`, 'aria-hidden': 'true' }, el('span', { class: 'arrow' }), el('span', { class: 'link-label' }, label));
}

export function render(o, layers) {
  const items = [];
  layers.forEach((l, i) => {
    if (i > 0) items.push(link(`backed by “${layers[i - 1]['backing-filename'] || l.filename}”`));
    items.push(node(l, i));
  });
  const brk = o.chainBreak;
  if (brk) {
    const where = brk.offset !== undefined ? ` (named at byte ${fmtOffset(brk.offset)})` : '';
    if (brk.kind === 'missing') {
      items.push(link(`backed by “${brk.name}”`, 'broken'));
      items.push(el('li', { class: 'node missing', dataset: { missing: brk.name } },
        el('div', { class: 'node-head' }, el('span', { class: 'layer-name' }, baseName(brk.name)), el('span', { class: 'node-flag' }, 'missing')),
        el('div', { class: 'muted small' }, `not among the files given${where}`),
        el('div', {}, addButton(brk.name)),
      ));
    } else if (brk.kind === 'loop') {
      const back = layers.findIndex((l) => baseName(l.filename) === baseName(brk.name));
      items.push(link(`backed by “${brk.name}”`, 'loop'));
      items.push(el('li', { class: 'node loop' },
        el('div', { class: 'node-head' }, el('span', { class: 'node-flag' }, '↺ loop')),
        el('div', { class: 'small' }, `${baseName(brk.name)} is already ${back >= 0 ? (back === 0 ? 'the image' : `backing file ${back}`) : 'in this chain'}: the chain cannot be read past here${where}.`),
      ));
    } else if (brk.kind === 'too-deep') {
      items.push(link('…', 'broken'));
      items.push(el('li', { class: 'node broken' }, el('div', { class: 'small' }, `diskscope follows at most ${brk.limit} files.`)));
    } else {
      items.push(link(`backed by “${brk.name}”`, 'broken'));
      items.push(el('li', { class: 'node broken' },
        el('div', { class: 'node-head' }, el('span', { class: 'layer-name' }, baseName(brk.name)), el('span', { class: 'node-flag' }, 'unreadable')),
        el('div', { class: 'small' }, brk.error),
        el('div', {}, el('button', { type: 'button', class: 'btn small', onclick: () => $('add-input').click() }, 'Add another file…')),
      ));
    }
  }
  $('chain').replaceChildren(...items);
  $('chain').dataset.layers = String(layers.length);
  $('chain').dataset.break = brk ? brk.kind : '';

  // The words: what is missing, what it costs, and how to fix it.
  const box = $('chain-break');
  box.replaceChildren();
  const missingCompanions = layers.flatMap((l) => (l.companions || []).filter((c) => !c.found).map((c) => ({ ...c, by: l.filename })));
  for (const m of missingCompanions) {
    const where = m.offset !== undefined ? ` at byte ${fmtOffset(m.offset)}` : '';
    box.append(el('p', {}, el('strong', {}, `Missing ${m.role}: ${m.name}. `), `${m.by} names “${m.name}”${where} as its ${m.role}, but it was not among the files given. Until it is added, the clusters stored in it cannot be shown or read. Use the button above, or drop it anywhere on this page.`));
  }
  if (brk) {
    box.dataset.kind = brk.kind;
    const where = brk.offset !== undefined ? ` at byte ${fmtOffset(brk.offset)}` : '';
    if (brk.kind === 'missing') {
      box.append(el('p', {}, el('strong', {}, `Missing backing file: ${brk.name}. `), `${brk.by} names “${brk.name}”${where}, but it was not among the files given. Until it is added, the clusters this image takes from it cannot be shown or read. Use the button above, or drop it anywhere on this page.`));
    } else if (brk.kind === 'loop') {
      box.append(el('p', {}, el('strong', {}, 'The backing chain loops. '), `${brk.by} names “${brk.name}”${where}, which is already in this chain, so the chain cannot be read past it.`));
    } else if (brk.kind === 'too-deep') {
      box.append(el('p', {}, el('strong', {}, 'The backing chain is too deep. '), `diskscope follows at most ${brk.limit} files.`));
    } else {
      box.append(el('p', {}, el('strong', {}, `Backing file ${brk.name} could not be opened. `), `${brk.by} names it${where}: ${brk.error}`));
    }
  }
  box.hidden = !box.childNodes.length;
  // A companion file the chain reads (an add-cow's image file, a raw-cow's data) is used.
  const companionsFound = new Set(layers.flatMap((l) => (l.companions || []).filter((c) => c.found).map((c) => baseName(c.found))));
  const unused = o.files.filter((f) => (f.role === 'not-an-image' || f.role === 'image') && !companionsFound.has(baseName(f.name)));
  $('unused').hidden = !unused.length;
  $('unused').textContent = unused.length
    ? `Not used by this image: ${unused.map((f) => `${f.name} (${f.role === 'image' ? 'another image' : 'not a disk image'})`).join(', ')}.`
    : '';
}
