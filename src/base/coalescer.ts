// Coalescer: serialises runs of one async job, and lets calls made while a run is waiting to start share
// that run. For jobs that write "the current state" (the snapshots object, the stored-TLog frontier):
// N requests during one slow run cost one more run, not N.
// Contract: a promise returned by run() settles after a run that *started* after the call, so that run
// saw every change made before the call. A failed run rejects all calls that shared it; later calls
// start a new run.

export class Coalescer {
  private tail: Promise<void> = Promise.resolve();
  private queued: Promise<void> | undefined;

  constructor(private readonly job: () => Promise<void>) {}

  run(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    const run = this.tail.then(() => {
      this.queued = undefined; // changes from now on need the next run
      return this.job();
    });
    this.queued = run;
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Resolves when every run requested so far has settled (never rejects). */
  settled(): Promise<void> {
    return this.tail;
  }
}
