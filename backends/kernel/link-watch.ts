// Notices when an interface comes back up (a link flap, an administrator's down/up): the kernel flushes
// the routes through a link that goes down and does not restore them, so a network with routes through
// it reconciles at once instead of at the next periodic check. Polls getifaddrs (os.networkInterfaces,
// which lists only interfaces that are up and running) in this process's own network namespace: no
// child process, nothing to leave behind.
import { networkInterfaces } from 'node:os';

const POLL_MS = 500;

export class LinkWatch {
  private readonly timer: NodeJS.Timeout;
  private up: boolean;

  /** Calls `onUp` each time `name` goes from down (or absent) to up and running. */
  constructor(private readonly name: string, onUp: () => void, pollMs = POLL_MS) {
    this.up = this.isUp();
    this.timer = setInterval(() => {
      const now = this.isUp();
      if (now && !this.up) onUp();
      this.up = now;
    }, pollMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private isUp(): boolean {
    return (networkInterfaces()[this.name] ?? []).some((a) => a.family === 'IPv4');
  }
}
