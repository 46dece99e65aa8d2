// Progress for a person at a terminal: one redrawn bar line on stderr with elapsed and remaining time.
// Without a TTY (CI) there is no bar, only one plain line per finished step.

export class Progress {
  private readonly tty: boolean;
  private readonly t0 = Date.now();
  private done = 0;
  private current = '';

  constructor(private total: number, private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = Boolean(stream.isTTY);
  }

  /** More steps became known (e.g. after setup). */
  addSteps(n: number): void {
    this.total += n;
    this.draw();
  }

  /** A step begins. */
  start(label: string): void {
    this.current = label;
    this.draw();
  }

  /** The current step ended; `result` is printed as a line (above the bar on a TTY). */
  finish(result: string): void {
    this.done++;
    this.log(result);
  }

  /** A line of its own, e.g. a setup message. */
  log(line: string): void {
    if (this.tty) this.stream.write('\r\x1b[K');
    this.stream.write(`${line}\n`);
    this.draw();
  }

  close(): void {
    if (this.tty) this.stream.write('\r\x1b[K');
  }

  private draw(): void {
    if (!this.tty) return;
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const filled = Math.round(frac * width);
    const elapsed = (Date.now() - this.t0) / 1000;
    const left = this.done > 0 ? (elapsed / this.done) * (this.total - this.done) : undefined;
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.done}/${this.total}`;
    const times = `${clock(elapsed)} elapsed${left === undefined ? '' : `, ~${clock(left)} left`}`;
    const cols = this.stream.columns || 100;
    this.stream.write(`\r\x1b[K${`${bar}  ${this.current}  (${times})`.slice(0, cols - 1)}`);
  }
}

function clock(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}
