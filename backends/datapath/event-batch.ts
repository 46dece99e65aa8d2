// Lease events handed over in one go (a watch delivers a transaction's keys one by one) are applied
// as one batch: the peer-table backends then swap their table once. Calls resolve in order.
import type { LeaseEvent } from '../backend.js';

export class EventBatcher {
  private readonly pending: LeaseEvent[] = [];
  private next: Promise<void> | undefined;

  constructor(private readonly apply: (events: readonly LeaseEvent[]) => void) {}

  push(events: readonly LeaseEvent[]): Promise<void> {
    this.pending.push(...events);
    this.next ??= Promise.resolve().then(() => {
      this.next = undefined;
      this.apply(this.pending.splice(0));
    });
    return this.next;
  }
}
