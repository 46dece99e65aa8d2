// Reading JSON objects the way Go's encoding/json does, which flannel's formats rely on.
// Base module: imports nothing.

/** JSON text that holds an object, parsed; undefined for anything else (bad JSON, an array, a scalar). */
export function parseJsonObject(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const raw: unknown = JSON.parse(text);
    return isPlainObject(raw) ? raw : undefined;
  } catch {
    return undefined;
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Picks the named fields out of an object case-insensitively, the last match winning, as Go does.
 * Unknown keys are ignored.
 */
export function pickFields<K extends string>(obj: Record<string, unknown>, names: readonly K[]): Partial<Record<K, unknown>> {
  const byLower = new Map(names.map((n) => [n.toLowerCase(), n]));
  const out: Partial<Record<K, unknown>> = {};
  for (const [key, value] of Object.entries(obj)) {
    const name = byLower.get(key.toLowerCase());
    if (name !== undefined) out[name] = value;
  }
  return out;
}
