// Number formatting for the page. Offsets and sizes arrive as numbers (exact below 2^53)
// or, for hostile header values, as "0x…" strings, which are shown as they are.

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** "64 MiB", "1.5 GiB", "512 bytes". */
export function human(v) {
  if (typeof v !== 'number') return String(v);
  let i = 0;
  let x = v;
  while (x >= 1024 && i < UNITS.length - 1) {
    x /= 1024;
    i++;
  }
  if (i === 0) return `${v} ${v === 1 ? 'byte' : 'bytes'}`;
  const s = Number.isInteger(x) ? String(x) : String(Number(x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)));
  return `${s} ${UNITS[i]}`;
}

/** "64 MiB (67,108,864 bytes)". */
// One formatter: toLocaleString makes a new one per call, slow in tables of thousands.
const NUMBER = new Intl.NumberFormat('en-US');

export function bytes(v) {
  if (typeof v !== 'number') return String(v);
  if (v < 1024) return human(v);
  return `${human(v)} (${NUMBER.format(v)} bytes)`;
}

export function hex(v) {
  return typeof v === 'number' ? `0x${v.toString(16)}` : String(v);
}

export function pct(part, total) {
  if (!total) return '0 %';
  const p = (100 * part) / total;
  if (p === 0) return '0 %';
  if (p < 0.1) return '<0.1 %';
  return `${p.toFixed(p < 10 ? 1 : 0)} %`;
}

/** The download name: the image's name with its extension replaced by .raw. */
export function rawName(name) {
  const base = name.replace(/\.[^./\\]*$/, '');
  return `${base || name}.raw`;
}
