// The findings panel: every finding of every layer's check, worst first, each with its
// severity, its sentence, and links to what it concerns: the bytes at fault (the hex view,
// through 'diskscope:show-bytes') and the guest range it affects (the map, through
//
//   document.dispatchEvent(new CustomEvent('diskscope:show-guest', { detail: {
//     start,   // guest byte offset
//     length,  // guest bytes concerned (at least 1)
//     label,   // words for what is there
//   }}));
//
// which the allocation map listens to, to point at the cells).

import { el } from './dom.js';
import { hex } from './format.js';
import { SHOW_BYTES } from './hexview.js';

export const SHOW_GUEST = 'diskscope:show-guest';

const SEVERITY = { info: 'Info', warning: 'Warning', leak: 'Leak', corruption: 'Corruption' };
const RANK = { corruption: 0, leak: 1, warning: 2, info: 3 };

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const at = (v) => `${v.toLocaleString('en-US')} (${hex(v)})`;

/** Table rows for `findings` (the core's Finding objects), worst first. */
export function rows(findings, clusterSize) {
  const sorted = findings.map((f, i) => ({ f, i })).sort((a, b) => (RANK[a.f.severity] ?? 4) - (RANK[b.f.severity] ?? 4) || a.i - b.i);
  return sorted.map(({ f }) => {
    const hasOffset = typeof f.offset === 'number';
    const hasGuest = typeof f.guest === 'number';
    const label = `${SEVERITY[f.severity] || f.severity}: ${f.message}`;
    return el('tr', { class: `sev-${f.severity}`, dataset: { code: f.code || '', severity: f.severity } },
      el('td', {}, el('span', { class: `sev sev-${f.severity}` }, SEVERITY[f.severity] || f.severity)),
      el('td', { class: 'finding-file' }, f.file),
      el('td', { class: 'num mono' }, hasOffset
        ? el('button', {
          type: 'button',
          class: 'link show-bytes',
          'aria-label': `Show the bytes at offset ${f.offset} of ${f.file}`,
          onclick: () => document.dispatchEvent(new CustomEvent(SHOW_BYTES, { detail: { file: f.file, offset: f.offset, length: Math.max(1, f.length || 1), label } })),
        }, at(f.offset))
        : ''),
      el('td', {}, capital(f.message),
        hasGuest
          ? el('span', { class: 'finding-links' }, el('button', {
            type: 'button',
            class: 'btn small show-guest',
            'aria-label': `Show guest offset ${f.guest} on the map`,
            onclick: () => document.dispatchEvent(new CustomEvent(SHOW_GUEST, { detail: { start: f.guest, length: Math.max(1, clusterSize || 1), label } })),
          }, `Guest ${hex(f.guest)} on the map`))
          : null),
    );
  });
}
