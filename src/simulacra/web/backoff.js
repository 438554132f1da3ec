// Reconnect schedule: how long to wait before attempt n, and how to show it.
//
//   lost ─► wait 1 s ─► try ─✗─► wait 2 s ─► try ─✗─► 4 s ... 15 s, 15 s, ...
//                         └─✓─► Welcome ─► attempt count back to 0
//
// Pure functions, so the schedule is tested without clocks.

export const BACKOFF_BASE_MS = 1000;
export const BACKOFF_CAP_MS = 15000;

/** Delay before reconnect attempt `attempt` (1 = the first retry after a loss). */
export function reconnectDelayMs(attempt) {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt ${attempt} < 1`);
  // 2 ** 4 * 1 s = 16 s is already past the cap; stop doubling before numbers grow.
  const exponent = Math.min(attempt - 1, 4);
  return Math.min(BACKOFF_BASE_MS * 2 ** exponent, BACKOFF_CAP_MS);
}

/** "reconnecting in 3 s…" for `remainingMs` left; whole seconds, rounded up. */
export function reconnectText(remainingMs) {
  const seconds = Math.max(1, Math.ceil(remainingMs / 1000));
  return `reconnecting in ${seconds} s…`;
}
