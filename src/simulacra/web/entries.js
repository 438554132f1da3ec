// The viewer dictionary kept in the browser: IndexedDB, metadata only.
//
//   server (ls, redeem, put_commit) ─► entry {id, name, size, type, rights, locator, from, created}
//        ─► pick those fields ─► IndexedDB "simulacra" / "entries"  keyed [user, id]
//   pushed inbox item {inbox, from, name, size, type, rights, expires} ─► "inbox" keyed [user, inbox]
//
// Never the file's bytes: an entry is where the file lives on the server (its
// locator), what it is called, and what this user may do with it.

const DB_NAME = "simulacra";
const DB_VERSION = 1;
const ENTRY_FIELDS = ["id", "name", "size", "type", "rights", "locator", "from", "created"];
const INBOX_FIELDS = ["inbox", "from", "name", "size", "type", "rights", "expires", "created"];
export const MAX_ENTRIES = 10000; // per user; a dictionary is a list people read, not a dump

function pick(obj, fields) {
  const out = {};
  for (const f of fields) {
    const v = obj[f];
    if (typeof v === "string" || typeof v === "number" || v === null) out[f] = v;
  }
  return out;
}

/** Only the metadata fields of a server entry (anything else is dropped). */
export function entryRecord(user, entry) {
  return { ...pick(entry, ENTRY_FIELDS), user };
}

export function inboxRecord(user, item) {
  return { ...pick(item, INBOX_FIELDS), user };
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export class ViewerDictionary {
  constructor(db) {
    this.db = db;
  }

  static async open(name = DB_NAME) {
    const request = indexedDB.open(name, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("entries", { keyPath: ["user", "id"] }).createIndex("user", "user");
      db.createObjectStore("inbox", { keyPath: ["user", "inbox"] }).createIndex("user", "user");
    };
    return new ViewerDictionary(await done(request));
  }

  close() {
    this.db.close();
  }

  async list(store, user) {
    const tx = this.db.transaction(store, "readonly");
    const rows = await done(tx.objectStore(store).index("user").getAll(user, MAX_ENTRIES));
    return rows.sort((a, b) => (a.created ?? 0) - (b.created ?? 0));
  }

  entries(user) {
    return this.list("entries", user);
  }

  inbox(user) {
    return this.list("inbox", user);
  }

  async put(user, entry) {
    const tx = this.db.transaction("entries", "readwrite");
    tx.objectStore("entries").put(entryRecord(user, entry));
    await finished(tx);
  }

  /** Make the user's entries exactly `entries` (the server's list is the truth). */
  async replace(user, entries) {
    const tx = this.db.transaction("entries", "readwrite");
    const store = tx.objectStore("entries");
    const keep = new Set(entries.map((e) => e.id));
    const old = await done(store.index("user").getAll(user));
    for (const row of old) if (!keep.has(row.id)) store.delete([user, row.id]);
    for (const entry of entries.slice(0, MAX_ENTRIES)) store.put(entryRecord(user, entry));
    await finished(tx);
  }

  async putInbox(user, item) {
    const tx = this.db.transaction("inbox", "readwrite");
    tx.objectStore("inbox").put(inboxRecord(user, item));
    await finished(tx);
  }

  async removeInbox(user, inboxId) {
    const tx = this.db.transaction("inbox", "readwrite");
    tx.objectStore("inbox").delete([user, inboxId]);
    await finished(tx);
  }
}
