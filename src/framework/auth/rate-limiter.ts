// A fixed-window rate limiter per key (the remote address of token requests): at most `perWindow`
// requests per window of windowMs. Bounded: at most keysMax keys are tracked; when full, expired windows
// are dropped first, then the oldest key. Time is passed in, so tests can control it.

export const rateLimiterKeysMax = 10_000;

export class RateLimiter {
  private readonly windows = new Map<string, { startMs: number; count: number }>();

  constructor(private readonly now: () => number, private readonly windowMs = 60_000) {}

  /** Counts one request of `key`; returns 0 when allowed, else the seconds until the window ends. */
  take(key: string, perWindow: number): number {
    const nowMs = this.now();
    let window = this.windows.get(key);
    if (window === undefined || nowMs - window.startMs >= this.windowMs) {
      this.windows.delete(key);
      if (this.windows.size >= rateLimiterKeysMax) this.prune(nowMs);
      window = { startMs: nowMs, count: 0 };
      this.windows.set(key, window);
    }
    window.count++;
    if (window.count <= perWindow) return 0;
    return Math.max(1, Math.ceil((window.startMs + this.windowMs - nowMs) / 1000));
  }

  private prune(nowMs: number): void {
    for (const [key, window] of this.windows) if (nowMs - window.startMs >= this.windowMs) this.windows.delete(key);
    if (this.windows.size >= rateLimiterKeysMax) this.windows.delete(this.windows.keys().next().value!);
  }
}
