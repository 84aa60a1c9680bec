/**
 * A training progress line: step, images/s, loss and ETA. On a terminal it redraws one
 * line in place; elsewhere (logs, CI) it prints one plain line per update, at most one
 * every `intervalMs`, so the output stays readable.
 */
export interface ProgressStats {
  step: number;
  total: number;
  imagesPerSec: number;
  loss: number;
  /** Extra fields shown after the loss (e.g. "‖g‖ 0.83"). */
  extra?: string;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

export function formatProgress(p: ProgressStats, etaSeconds: number, width = 20, bar = true): string {
  const frac = p.total > 0 ? Math.min(1, p.step / p.total) : 0;
  const filled = Math.round(frac * width);
  const barText = bar ? `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` : '';
  const pct = `${(frac * 100).toFixed(0).padStart(3)}%`;
  const loss = Number.isFinite(p.loss) ? p.loss.toPrecision(4) : String(p.loss);
  return `step ${String(p.step).padStart(String(p.total).length)}/${p.total} ${barText}${pct} | ${p.imagesPerSec.toFixed(1)} img/s | loss ${loss}${p.extra ? ` | ${p.extra}` : ''} | ETA ${formatDuration(etaSeconds)}`;
}

export class ProgressBar {
  private lastPrint = 0;
  private drawn = false;
  constructor(
    private readonly out: NodeJS.WriteStream | { write(s: string): boolean; isTTY?: boolean },
    private readonly intervalMs = 10_000,
  ) {}

  get isTTY(): boolean {
    return Boolean(this.out.isTTY);
  }

  /** Show the state; `force` prints even within the interval (e.g. the last step). */
  update(p: ProgressStats, etaSeconds: number, force = false): void {
    const now = Date.now();
    if (this.isTTY) {
      this.out.write(`\r${formatProgress(p, etaSeconds)}\x1b[K`);
      this.drawn = true;
      return;
    }
    if (!force && now - this.lastPrint < this.intervalMs) return;
    this.lastPrint = now;
    this.out.write(`${formatProgress(p, etaSeconds, 20, false)}\n`);
  }

  /** Print a message on its own line without garbling the bar. */
  log(message: string): void {
    if (this.isTTY && this.drawn) this.out.write('\r\x1b[K');
    this.out.write(`${message}\n`);
    this.drawn = false;
  }

  done(): void {
    if (this.isTTY && this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
