// The files panel: upload, the viewer dictionary, share, inbox, open, download.
//
//   picker / drop ─► FilesApi.upload (chunked, windowed) ─► <progress> ─► entry
//   entry ─► [open]     ─► openEntry(id): the "viewer" app streams its picture
//         ─► [share]    ─► dialog (recipient, rights, expiry) ─► code + copy
//         ─► [download] ─► exact bytes (rights owner | download) ─► a saved file
//   pushed inbox item ─► [add] / [open] ─► redeem ─► entry
//   entries and inbox ─► IndexedDB (entries.js), never the bytes
//   files socket lost ─► "files unavailable: why" ─► retry after 1 s, 2 s, 4 s ... 15 s
//
// `view` is what tests and people can read: state, entries, inbox, uploads, lastCode.

import { reconnectDelayMs } from "./backoff.js";
import { ViewerDictionary } from "./entries.js";
import { FilesApi } from "./filesapi.js";

const $ = (id) => document.getElementById(id);

export function formatBytes(n) {
  if (!Number.isFinite(n) || n < 0) return "?";
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB"];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

export class FilesPanel {
  constructor({ openEntry }) {
    this.openEntry = openEntry;
    this.api = null;
    this.dictionary = null;
    this.user = "";
    this.token = "";
    this.shareEntry = null;
    this.attempt = 0; // files socket reconnects since it last worked
    this.retryTimer = null;
    this.view = {
      state: "idle", // idle | connecting | ready | unavailable
      reason: "",
      entries: [],
      inbox: [],
      uploads: [],
      lastCode: "",
      message: "",
    };
    this.bind();
  }

  bind() {
    const toggle = $("files-toggle");
    toggle.addEventListener("click", () => this.show($("files").hidden));
    $("file-input").addEventListener("change", (ev) => {
      this.uploadAll([...ev.target.files]);
      ev.target.value = "";
    });
    const zone = $("files");
    zone.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (ev) => {
      ev.preventDefault();
      zone.classList.remove("dragging");
      this.uploadAll([...(ev.dataTransfer?.files ?? [])]);
    });
    // A file dropped on the picture opens the panel and uploads it too.
    $("stage").addEventListener("dragover", (ev) => ev.preventDefault());
    $("stage").addEventListener("drop", (ev) => {
      ev.preventDefault();
      this.show(true);
      this.uploadAll([...(ev.dataTransfer?.files ?? [])]);
    });
    $("redeem-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const code = $("redeem-code").value.trim();
      if (code) this.redeem({ code }).then(() => ($("redeem-code").value = ""));
    });
    $("share-submit").addEventListener("click", () => this.createCode());
    $("share-close").addEventListener("click", () => $("share-dialog").close());
    $("share-copy").addEventListener("click", () => this.copyCode());
    $("share-revoke").addEventListener("click", () => this.revokeCode());
  }

  show(visible) {
    $("files").hidden = !visible;
    $("files-toggle").setAttribute("aria-expanded", String(visible));
  }

  say(message, isError = false) {
    this.view.message = message;
    const p = $("files-message");
    p.textContent = message;
    p.classList.toggle("error", isError);
  }

  setState(state, reason = "") {
    this.view.state = state;
    this.view.reason = reason;
    const notice = $("files-unavailable");
    notice.hidden = state !== "unavailable";
    notice.textContent = state === "unavailable" ? `files unavailable: ${reason}` : "";
    $("files-main").classList.toggle("disabled", state !== "ready");
  }

  /** A stream session started for `user`: (re)open the files API for it. */
  async connected(token, user) {
    if (this.api && !this.api.closed && this.token === token && this.user === user) return;
    if (this.token !== token || this.user !== user) this.attempt = 0;
    this.signOut();
    this.token = token;
    this.user = user;
    this.setState("connecting");
    try {
      this.dictionary ??= await ViewerDictionary.open();
      this.view.entries = await this.dictionary.entries(user);
      this.view.inbox = await this.dictionary.inbox(user);
      this.render();
    } catch (err) {
      // Private windows may refuse IndexedDB; the panel still works for this visit.
      this.say(`entries are not kept on this device: ${err.message}`, true);
    }
    const api = new FilesApi(token, {
      onInbox: (item) => this.received(item),
      onClose: (reason) => this.lost(api, reason),
    });
    this.api = api;
    try {
      await api.open();
      if (this.api !== api) return;
      const { entries } = await api.request("ls");
      this.view.entries = entries;
      await this.dictionary?.replace(user, entries);
      this.attempt = 0;
      this.setState("ready");
      this.render();
    } catch (err) {
      this.lost(api, err.message);
    }
  }

  // The files socket went away on its own (the stream may be fine): retry with backoff.
  lost(api, reason) {
    if (this.api !== api) return;
    this.attempt += 1;
    this.setState("unavailable", reason);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.api === api) this.connected(this.token, this.user);
    }, reconnectDelayMs(this.attempt));
  }

  signOut() {
    clearTimeout(this.retryTimer);
    if (this.api) this.api.close();
    this.api = null;
    this.view.entries = [];
    this.view.inbox = [];
    this.render();
  }

  // ------------------------------------------------------------ upload

  uploadAll(fileList) {
    for (const file of fileList) this.upload(file);
  }

  async upload(file) {
    const item = el("li", { class: "upload" }, el("span", { class: "name" }, file.name));
    const bar = el("progress", { max: String(Math.max(file.size, 1)), value: "0" });
    item.append(bar);
    $("uploads").append(item);
    const record = { name: file.name, size: file.size, sent: 0, state: "uploading", error: "" };
    this.view.uploads.push(record);
    try {
      if (!this.api || this.view.state !== "ready") throw new Error("files are unavailable");
      const entry = await this.api.upload(file, file.name, (sent) => {
        record.sent = sent;
        bar.value = sent;
      });
      record.state = "done";
      bar.value = bar.max;
      this.addEntry(entry);
      this.say(`uploaded ${file.name}`);
      item.remove();
    } catch (err) {
      record.state = "failed";
      record.error = err.message;
      item.classList.add("failed");
      item.append(el("span", { class: "error" }, err.message));
      this.say(`upload of ${file.name} failed: ${err.message}`, true);
    }
  }

  addEntry(entry) {
    this.view.entries = [...this.view.entries.filter((e) => e.id !== entry.id), entry];
    this.dictionary?.put(this.user, entry).catch(() => {});
    this.render();
  }

  // ------------------------------------------------------------ share

  openShare(entry) {
    this.shareEntry = entry;
    $("share-name").textContent = entry.name;
    $("share-result").hidden = true;
    $("share-code").value = "";
    $("share-message").textContent = "";
    $("share-submit").disabled = false;
    $("share-revoke").disabled = false;
    $("share-dialog").showModal();
    $("share-to").focus();
  }

  async createCode() {
    const to = $("share-to").value.trim();
    if (!to) {
      $("share-message").textContent = "who is it for?";
      return;
    }
    $("share-submit").disabled = true;
    try {
      const share = await this.api.request("share", {
        entry: this.shareEntry.id,
        to,
        rights: $("share-rights").value,
        ttl: $("share-ttl").value,
      });
      this.view.lastCode = share.code;
      $("share-code").value = share.code;
      $("share-result").hidden = false;
      const when = new Date(share.expires * 1000).toLocaleString();
      $("share-message").textContent = `${share.delivered ? "delivered to" : "for"} ${to}, ${share.rights}, until ${when}`;
    } catch (err) {
      $("share-message").textContent = err.message;
      $("share-submit").disabled = false;
    }
  }

  async revokeCode() {
    const code = $("share-code").value;
    $("share-revoke").disabled = true;
    try {
      await this.api.request("revoke", { code });
      $("share-message").textContent = "revoked: the code no longer works";
    } catch (err) {
      $("share-message").textContent = err.message;
      $("share-revoke").disabled = false;
    }
  }

  async copyCode() {
    const input = $("share-code");
    try {
      await navigator.clipboard.writeText(input.value);
      $("share-message").textContent = "code copied";
    } catch {
      // Without clipboard permission, select it so Ctrl+C works.
      input.select();
      $("share-message").textContent = "code selected: press Ctrl+C";
    }
  }

  // ------------------------------------------------------------ inbox

  received(item) {
    this.view.inbox = [...this.view.inbox.filter((i) => i.inbox !== item.inbox), item];
    this.dictionary?.putInbox(this.user, item).catch(() => {});
    this.say(`${item.from} shared ${item.name} with you`);
    this.render();
  }

  /** Redeem a code ({code}) or an inbox item ({inbox}); resolves with the entry. */
  async redeem(what) {
    try {
      if (!this.api || this.view.state !== "ready") throw new Error("files are unavailable");
      const { entry } = await this.api.request("redeem", what);
      // The inbox item redeemed, or (a code typed in) the one announcing the same file.
      const same = (i) =>
        what.inbox !== undefined
          ? i.inbox === what.inbox
          : i.from === entry.from && i.name === entry.name && i.size === entry.size;
      for (const item of this.view.inbox.filter(same)) {
        this.dictionary?.removeInbox(this.user, item.inbox).catch(() => {});
      }
      this.view.inbox = this.view.inbox.filter((i) => !same(i));
      this.addEntry(entry);
      this.say(`added ${entry.name}`);
      return entry;
    } catch (err) {
      this.say(`cannot redeem: ${err.message}`, true);
      throw err;
    }
  }

  // ------------------------------------------------------------ download

  async download(entry) {
    try {
      const blob = await this.api.download(entry.id, entry.type || "application/octet-stream");
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: entry.name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.say(`downloaded ${entry.name}`);
    } catch (err) {
      this.say(`download failed: ${err.message}`, true);
    }
  }

  // ------------------------------------------------------------ render

  render() {
    const entries = this.view.entries.map((e) => {
      const canDownload = e.rights === "owner" || e.rights === "download";
      const meta = `${formatBytes(e.size)} · ${e.type || "?"} · ${e.rights}${e.from && e.rights !== "owner" ? ` · from ${e.from}` : ""}`;
      return el(
        "li",
        { class: "entry", "data-entry": e.id },
        el("span", { class: "name", title: e.name }, e.name),
        el("span", { class: "meta" }, meta),
        el(
          "span",
          { class: "actions" },
          el("button", { type: "button", class: "open", onclick: () => this.openEntry(e.id) }, "open"),
          e.rights === "owner"
            ? el("button", { type: "button", class: "share", onclick: () => this.openShare(e) }, "share")
            : "",
          canDownload
            ? el("button", { type: "button", class: "download", onclick: () => this.download(e) }, "download")
            : "",
        ),
      );
    });
    $("entries").replaceChildren(
      ...(entries.length ? entries : [el("li", { class: "empty" }, "no files yet")]),
    );
    const inbox = this.view.inbox.map((i) =>
      el(
        "li",
        { class: "entry inbox-item", "data-inbox": String(i.inbox) },
        el("span", { class: "name", title: i.name }, i.name),
        el("span", { class: "meta" }, `${formatBytes(i.size)} · ${i.rights} · from ${i.from}`),
        el(
          "span",
          { class: "actions" },
          el(
            "button",
            {
              type: "button",
              class: "open",
              onclick: () => this.redeem({ inbox: i.inbox }).then((e) => this.openEntry(e.id), () => {}),
            },
            "open",
          ),
          el("button", { type: "button", class: "add", onclick: () => this.redeem({ inbox: i.inbox }).catch(() => {}) }, "add"),
        ),
      ),
    );
    $("inbox").replaceChildren(...(inbox.length ? inbox : [el("li", { class: "empty" }, "nothing received")]));
  }
}
