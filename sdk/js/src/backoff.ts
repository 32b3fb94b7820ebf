// Reconnect delays: exponential growth with "full jitter" (each delay drawn
// uniformly between 0 and the current ceiling), so that the clients a
// restarting server drops at once do not all come back together.

/** BackoffOptions tunes {@link Backoff}. Every field has a default. */
export interface BackoffOptions {
  /** Ceiling of the first delay, in ms. Default 500. */
  base?: number;
  /** Largest ceiling, in ms. Default 10000. */
  max?: number;
  /** Growth of the ceiling per attempt. Default 2. */
  factor?: number;
  /** Source of randomness in [0, 1); Math.random by default (tests pass their own). */
  random?: () => number;
}

/**
 * Backoff hands out reconnect delays. The ceiling doubles (by `factor`) per
 * attempt up to `max`; the delay is uniform in [0, ceiling]. The caller
 * resets it once a connection has stayed up for a stable period, not as
 * soon as it opens: a server that accepts and then drops at once must not
 * be hammered.
 */
export class Backoff {
  readonly base: number;
  readonly max: number;
  readonly factor: number;
  private readonly random: () => number;
  /** attempt counts the delays handed out since the last reset. */
  attempt = 0;

  constructor(opts: BackoffOptions = {}) {
    this.base = opts.base ?? 500;
    this.max = opts.max ?? 10_000;
    this.factor = opts.factor ?? 2;
    this.random = opts.random ?? Math.random;
    if (!(this.base > 0) || !(this.max >= this.base) || !(this.factor >= 1)) {
      throw new RangeError("switchboard: backoff needs 0 < base <= max and factor >= 1");
    }
  }

  /** ceiling is the upper bound of the next delay. */
  ceiling(): number {
    return Math.min(this.max, this.base * Math.pow(this.factor, this.attempt));
  }

  /** next returns the next delay in ms and counts the attempt. */
  next(): number {
    const d = Math.floor(this.random() * this.ceiling());
    this.attempt++;
    return d;
  }

  /** reset starts again from `base`. */
  reset(): void {
    this.attempt = 0;
  }
}
