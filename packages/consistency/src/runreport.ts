/** The HTML report of a run directory, rebuilt from config.json and metrics.jsonl. */
import { readFile, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { lineChartSvg, renderReport, type Series } from './report.js';
import type { EvalRecord } from './evaluate.js';

export async function readMetrics(dir: string): Promise<Record<string, any>[]> {
  const text = await readFile(join(dir, 'metrics.jsonl'), 'utf8').catch(() => '');
  return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

/** A moving average over `w` points (the raw sCM loss is noisy). */
function smooth(points: [number, number][], w: number): [number, number][] {
  if (w <= 1) return points;
  return points.map(([x], i) => {
    const a = points.slice(Math.max(0, i - w + 1), i + 1);
    return [x, a.reduce((s, p) => s + p[1], 0) / a.length];
  });
}

export async function writeReport(dir: string, command?: string): Promise<string> {
  const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
  const recs = await readMetrics(dir);
  const train = recs.filter((r) => r.kind === 'train');
  const evals = recs.filter((r) => r.kind === 'eval') as EvalRecord[];
  const w = Math.max(1, Math.floor(train.length / 50));
  const charts: string[] = [];
  const loss: [number, number][] = train.map((r) => [r.step, r.loss]);
  charts.push(lineChartSvg([{ name: 'loss', points: loss, color: '#bbb' }, { name: `mean of ${w}`, points: smooth(loss, w) }], { title: 'Training loss', xLabel: 'step' }));
  charts.push(lineChartSvg([{ name: 'images/s', points: train.map((r) => [r.step, r.imagesPerSec]) }], { title: 'Throughput', xLabel: 'step' }));
  const buckets = [...new Set(train.flatMap((r) => Object.keys(r).filter((k) => k.startsWith('gRms_t'))))].sort();
  if (buckets.length) {
    const series: Series[] = buckets.map((b) => ({ name: `t ≥ ${b.slice(6)}`, points: smooth(train.filter((r) => r[b] !== undefined).map((r) => [r.step, r[b]]), w) }));
    charts.push(lineChartSvg(series, { title: 'Raw tangent ‖g‖/√D by t (before normalization)', xLabel: 'step', logY: true }));
  }
  const metricNames = [...new Set(evals.flatMap((e) => Object.keys(e.metrics)))];
  if (metricNames.length) {
    charts.push(lineChartSvg(metricNames.map((m) => ({ name: m, points: evals.filter((e) => e.metrics[m] !== undefined).map((e) => [e.step, e.metrics[m]]) })), { title: 'Evaluation (sliced W2 to data, lower is better)', xLabel: 'step' }));
  }
  const last = evals[evals.length - 1];
  const earlier = evals.slice(Math.max(0, evals.length - 4), -1).reverse();
  const samples = [last, ...earlier].filter(Boolean).flatMap((e) => e.samples);
  const table = last && metricNames.length ? { header: ['step', ...metricNames], rows: [[last.step, ...metricNames.map((m) => last.metrics[m] ?? NaN)]] } : undefined;
  const lastTrain = train[train.length - 1];
  const subtitle = [
    command ? `Command: ${command}` : '',
    lastTrain ? `Steps trained: ${lastTrain.step}; last throughput ${lastTrain.imagesPerSec} images/s on the ${config.backend} backend.` : '',
  ].filter(Boolean).join(' ');
  const html = renderReport({ title: `${config.method} on ${config.data} (${config.model})`, subtitle, config, charts, samples, table });
  const path = join(dir, 'report.html');
  await writeFile(`${path}.tmp`, html);
  await rename(`${path}.tmp`, path);
  return path;
}
