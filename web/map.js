// The allocation map: one cell per cluster (or per group of clusters for big disks), drawn
// into an ImageData with one colour per class. Pure functions of the cells and a width.

const SIZES = [24, 20, 16, 14, 12, 10, 8, 6, 5, 4, 3, 2, 1];
const MAX_HEIGHT = 360;

/** Choose the cell size (px) and columns for `n` cells in `width` px. */
export function layoutMap(n, width) {
  width = Math.max(64, Math.floor(width));
  let pick = null;
  for (const size of SIZES) {
    let cols = Math.floor(width / size);
    if (cols >= 16) {
      // Rows of a round number of cells read better: a power of two if it fills most of
      // the width (a 256 GiB disk at 1 MiB a cell then has 1 GiB rows), else a multiple of 8.
      const pow = 2 ** Math.floor(Math.log2(cols));
      cols = pow >= cols * 0.75 ? pow : cols - (cols % 8);
    }
    cols = Math.max(1, Math.min(cols, n));
    const rows = Math.ceil(n / cols);
    pick = { size, cols, rows };
    if (rows * size <= MAX_HEIGHT) break;
  }
  const gap = pick.size >= 6 ? 1 : 0;
  return { ...pick, gap, width: pick.cols * pick.size, height: pick.rows * pick.size };
}

function rgba(hexColor) {
  const v = parseInt(hexColor.slice(1), 16);
  // ImageData is RGBA in memory; on little-endian machines a Uint32 reads it as ABGR.
  return (0xff << 24) | ((v & 0xff) << 16) | (v & 0xff00) | ((v >> 16) & 0xff);
}

export function drawMap(canvas, classes, layout, colorOf) {
  const { cols, size, gap, width, height } = layout;
  canvas.width = width;
  canvas.height = height;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  if (!width || !height) return;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(width, height);
  const px = new Uint32Array(img.data.buffer);
  const palette = new Uint32Array(256);
  for (let c = 0; c < 256; c++) palette[c] = rgba(colorOf(c));
  const inner = size - gap;
  for (let i = 0; i < classes.length; i++) {
    const color = palette[classes[i]];
    const x0 = (i % cols) * size;
    const y0 = Math.floor(i / cols) * size;
    if (inner === 1) {
      px[y0 * width + x0] = color;
      continue;
    }
    for (let y = 0; y < inner; y++) {
      const row = (y0 + y) * width + x0;
      px.fill(color, row, row + inner);
    }
  }
  ctx.putImageData(img, 0, 0);
}

/** Index of the cell at (x, y) css px, or -1. */
export function cellAt(layout, x, y, n) {
  const col = Math.floor(x / layout.size);
  const row = Math.floor(y / layout.size);
  if (x < 0 || y < 0 || col >= layout.cols || row >= layout.rows) return -1;
  const i = row * layout.cols + col;
  return i < n ? i : -1;
}
