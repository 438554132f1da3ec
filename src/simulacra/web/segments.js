// Emulated segments of one app, summed from GET /api/status for the stats overlay.
//
//   /api/status JSON ─► segments of app A (list or map, wherever the server put them)
//                    ─► {count, bytes, verified, queries, fallbacks}   or null when absent
//
// The status format grows with the server; anything unexpected counts as
// "no segment information", never as an error.

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

// Segments as a list: an array stays, a map {name: info} becomes its values.
function asList(segments) {
  if (Array.isArray(segments)) return segments.filter(isObject);
  if (isObject(segments)) return Object.values(segments).filter(isObject);
  return null;
}

// [segments, mode] of `app`: the server's shape is {apps: {A: {mode, segments: {S: {...}}}}};
// a list of apps, or a top-level "segments", are read as well.
function appSegments(status, app) {
  const apps = status.apps;
  let found = null;
  if (Array.isArray(apps)) found = apps.find((a) => isObject(a) && (a.name === app || a.app === app));
  else if (isObject(apps) && isObject(apps[app])) found = apps[app];
  const mode = typeof found?.mode === "string" ? found.mode : "";
  if (found && "segments" in found) return [asList(found.segments), mode];
  const top = status.segments;
  if (isObject(top) && app in top) return [asList(top[app]), mode];
  if (Array.isArray(top)) return [top.filter((s) => isObject(s) && s.app === app), mode];
  return [null, mode];
}

/**
 * Summary of the segments `status` lists for `app`: `count` of emulated ones
 * (those with a size), their total `bytes`, and totals of queries and fallbacks.
 * Null when the status carries no segment information for that app.
 */
export function segmentSummary(status, app) {
  if (!isObject(status) || typeof app !== "string" || !app) return null;
  const [list, mode] = appSegments(status, app);
  if (list === null) return null;
  const emulated = list.filter((s) => isCount(s.bytes));
  const sum = (key) => emulated.reduce((n, s) => n + (isCount(s[key]) ? s[key] : 0), 0);
  return {
    mode,
    count: emulated.length,
    total: list.length,
    bytes: sum("bytes"),
    packedBytes: sum("packed_bytes"),
    verified: emulated.filter((s) => s.verified === "exhaustive" || s.verified === true).length,
    queries: sum("queries"),
    fallbacks: sum("fallbacks"),
  };
}

/** "2 · 13.4 kB" for the overlay; "none of 3 (reference)" or "-" when there is nothing to sum. */
export function segmentText(summary) {
  if (!summary) return "-";
  if (summary.count === 0) {
    return `none of ${summary.total}${summary.mode ? ` (${summary.mode})` : ""}`;
  }
  const kb = summary.bytes / 1000;
  const size = kb >= 100 ? kb.toFixed(0) : kb.toFixed(1);
  return `${summary.count} · ${size} kB`;
}
