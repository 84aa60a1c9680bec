/**
 * A self-contained HTML report for a run: loss and metric curves as inline SVG, sample
 * grids and scatter plots (PNG files next to the report), the final
 * evaluation, and the run's configuration.
 */

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12 * Math.abs(hi); v += step) out.push(+v.toPrecision(12));
  return out;
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(+v.toPrecision(3)));

/** A line chart; `logY` plots log10 of positive values. Non-finite points are skipped. */
export function lineChartSvg(series: Series[], opts: { width?: number; height?: number; title?: string; xLabel?: string; logY?: boolean } = {}): string {
  const W = opts.width ?? 640, H = opts.height ?? 260, L = 60, R = 110, Tm = 24, B = 36;
  const tr = (y: number) => (opts.logY ? Math.log10(y) : y);
  const clean = series.map((s) => ({ ...s, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(tr(y))) }));
  const all = clean.flatMap((s) => s.points);
  if (!all.length) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="40"><text x="8" y="24" font-size="12">${esc(opts.title ?? '')}: no data</text></svg>`;
  const xs = all.map((p) => p[0]), ys = all.map((p) => tr(p[1]));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const px = (x: number) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y: number) => Tm + (1 - (tr(y) - y0) / (y1 - y0)) * (H - Tm - B);
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`];
  parts.push(`<rect x="${L}" y="${Tm}" width="${W - L - R}" height="${H - Tm - B}" fill="none" stroke="#999"/>`);
  if (opts.title) parts.push(`<text x="${L}" y="15" font-size="13" font-weight="bold">${esc(opts.title)}</text>`);
  for (const v of niceTicks(x0, x1)) parts.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${H - B}" y2="${H - B + 4}" stroke="#999"/><text x="${px(v)}" y="${H - B + 16}" text-anchor="middle">${fmt(v)}</text>`);
  for (const v of niceTicks(y0, y1)) {
    const y = Tm + (1 - (v - y0) / (y1 - y0)) * (H - Tm - B);
    parts.push(`<line x1="${L - 4}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#eee"/><text x="${L - 6}" y="${y + 4}" text-anchor="end">${opts.logY ? fmt(10 ** v) : fmt(v)}</text>`);
  }
  if (opts.xLabel) parts.push(`<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  clean.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    if (s.points.length) {
      const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join('');
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
      if (s.points.length === 1) parts.push(`<circle cx="${px(s.points[0][0])}" cy="${py(s.points[0][1])}" r="3" fill="${color}"/>`);
    }
    parts.push(`<rect x="${W - R + 8}" y="${Tm + 4 + k * 16}" width="10" height="10" fill="${color}"/><text x="${W - R + 22}" y="${Tm + 13 + k * 16}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

export interface ReportInput {
  title: string;
  /** Free text under the title (the command that produced the run, the device, ...). */
  subtitle?: string;
  config: unknown;
  /** Charts, already rendered (lineChartSvg). */
  charts: string[];
  /** Sample grids: PNG paths relative to the report, or inline SVG. */
  samples: { caption: string; file?: string; svg?: string }[];
  /** Final metrics table rows. */
  table?: { header: string[]; rows: (string | number)[][] };
}

export function renderReport(r: ReportInput): string {
  const samples = r.samples
    .map((s) => `<figure>${s.file ? `<img src="${esc(s.file)}" alt="${esc(s.caption)}">` : s.svg ?? ''}<figcaption>${esc(s.caption)}</figcaption></figure>`)
    .join('\n');
  const table = r.table
    ? `<h2>Evaluation</h2><table><tr>${r.table.header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${r.table.rows.map((row) => `<tr>${row.map((c) => `<td>${esc(typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toPrecision(4)) : c)}</td>`).join('')}</tr>`).join('')}</table>`
    : '';
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1200px; }
figure { display: inline-block; margin: 8px; vertical-align: top; }
figure img { image-rendering: pixelated; width: 280px; border: 1px solid #ccc; }
figcaption { font-size: 12px; color: #555; max-width: 280px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; }
pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
</style></head><body>
<h1>${esc(r.title)}</h1>
${r.subtitle ? `<p>${esc(r.subtitle)}</p>` : ''}
<h2>Training curves</h2>
${r.charts.join('\n')}
${table}
<h2>Samples</h2>
${samples}
<h2>Configuration</h2>
<pre>${esc(JSON.stringify(r.config, null, 2))}</pre>
</body></html>
`;
}
