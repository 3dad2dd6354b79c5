/**
 * The web console's page: the domain list, the selected domain's actions
 * and graphs, its console (xterm.js), the hypervisor console, xenstore and
 * the plumbing, all kept up to date by what the host sends over the
 * WebSocket (tools/web/session.ts lists the messages).
 */
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { Graphs } from "./graphs.js";
import { XenstoreView } from "./xenstore.js";
import { drawPlumbing } from "./plumbing.js";
import { $, el, fmtUptime } from "./dom.js";
import type { DomainRow as Row, History, Plumbing } from "../protocol.js";

type Msg = Record<string, unknown> & { t: string };

// ---- the connection ---------------------------------------------------------

let ws: WebSocket;
let nextId = 1;
const waiting = new Map<number, (m: Msg) => void>();

function connect(): void {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => {
    $("#conn").textContent = "connected";
    $("#conn").className = "conn up";
  };
  ws.onclose = (e) => {
    $("#conn").textContent = `disconnected${e.reason ? `: ${e.reason}` : ""}`;
    $("#conn").className = "conn down";
  };
  ws.onmessage = (e) => handle(JSON.parse(String(e.data)) as Msg);
}

/** Sends a request; resolves with its reply (ok or error). */
function request(op: string, args: Record<string, unknown> = {}): Promise<Msg> {
  const id = nextId++;
  ws.send(JSON.stringify({ id, op, ...args }));
  return new Promise((r) => waiting.set(id, r));
}

/** A request whose error (and log) is shown as xl would print it. */
async function act(op: string, args: Record<string, unknown> = {}): Promise<Msg> {
  const r = await request(op, args);
  const log = Array.isArray(r.log) ? (r.log as string[]) : [];
  const okLog = Array.isArray((r.ok as Msg | undefined)?.log)
    ? ((r.ok as Msg).log as unknown as string[])
    : [];
  const lines = [...log, ...okLog];
  if (typeof r.error === "string") lines.push(r.error);
  $("#errors").textContent = lines.join("\n");
  $("#errors").className = typeof r.error === "string" ? "error" : "";
  return r;
}

// ---- domains ------------------------------------------------------------------

const rows = new Map<
  number,
  { row: Row; tr: HTMLTableRowElement; cells: HTMLTableCellElement[] }
>();
let selected = -1;
const graphs = new Graphs($("#graphs"));

const kib = (n: number): string => String(Math.round(n / 1024));

function cellsOf(r: Row): string[] {
  return [
    r.name,
    String(r.domid),
    r.state,
    r.cpuS.toFixed(1),
    r.cpuPct.toFixed(1),
    kib(r.memKiB),
    kib(r.maxMemKiB),
    String(r.vcpus),
    fmtUptime(Date.now() - r.startMs),
    r.vbds ? `${r.vbdRd}/${r.vbdWr}` : "",
    r.nets ? `${Math.round(r.netTxB / 1024)}/${Math.round(r.netRxB / 1024)}` : "",
  ];
}

function updateRows(changed: Row[], gone: number[]): void {
  const body = $("#domains tbody");
  for (const domid of gone) {
    const tr = rows.get(domid)?.tr;
    if (tr) sight.unobserve(tr);
    tr?.remove();
    inSight.delete(domid);
    rows.delete(domid);
    if (domid === selected) select(-1);
  }
  for (const r of changed) {
    let e = rows.get(r.domid);
    if (!e) {
      const tr = el("tr", { "data-domid": String(r.domid) });
      const cells = cellsOf(r).map((_, i) => el("td", i === 0 || i === 2 ? {} : { class: "n" }));
      tr.append(...cells);
      tr.onclick = () => select(r.domid);
      // In domid order.
      const after = [...rows.values()].filter((x) => x.row.domid < r.domid).pop();
      if (after) after.tr.after(tr);
      else body.prepend(tr);
      e = { row: r, tr, cells };
      rows.set(r.domid, e);
      sight.observe(tr);
    }
    e.row = r;
    const text = cellsOf(r);
    text.forEach((t, i) => {
      if (e.cells[i]!.textContent !== t) e.cells[i]!.textContent = t;
    });
    e.tr.title = r.reason ? `shut down: ${r.reason}` : "";
    e.tr.classList.toggle("paused", r.state.includes("p"));
    e.tr.classList.toggle("shutdown", r.state.includes("s") || r.state.includes("c"));
    if (r.domid === selected)
      $("#sel-title").textContent = `${r.name} (domain ${r.domid}) ${r.state}`;
  }
  $("#domcount").textContent = `${rows.size} domains`;
  applyFilter();
  refreshPlumbChoices();
}

function applyFilter(): void {
  const f = ($("#filter") as HTMLInputElement).value.trim().toLowerCase();
  for (const e of rows.values())
    e.tr.hidden = f !== "" && !e.row.name.toLowerCase().includes(f) && String(e.row.domid) !== f;
}

function select(domid: number): void {
  rows.get(selected)?.tr.classList.remove("selected");
  selected = domid;
  const e = rows.get(domid);
  e?.tr.classList.add("selected");
  $("#sel-title").textContent = e
    ? `${e.row.name} (domain ${domid}) ${e.row.state}`
    : "No domain selected";
  graphs.clear();
  if (e) void request("select", { domid });
  attachConsole();
  if (e) {
    ($("#plumb-a") as HTMLSelectElement).value = String(domid);
    askPlumbing();
  }
}

// Uptime moves on its own, in the rows in sight (a thousand rows' text changing every second costs the page).
const inSight = new Set<number>();
const sight = new IntersectionObserver((entries) => {
  for (const en of entries) {
    const id = Number((en.target as HTMLElement).dataset.domid);
    if (en.isIntersecting) inSight.add(id);
    else inSight.delete(id);
  }
});
setInterval(() => {
  for (const id of inSight) {
    const e = rows.get(id);
    if (!e) continue;
    const t = fmtUptime(Date.now() - e.row.startMs);
    if (e.cells[8]!.textContent !== t) e.cells[8]!.textContent = t;
  }
}, 1000);

for (const b of document.querySelectorAll<HTMLButtonElement>("#actions button")) {
  b.onclick = () => {
    const op = b.dataset.op!;
    if (op === "restore") {
      void act("restore", { file: ($("#savefile") as HTMLInputElement).value });
      return;
    }
    if (selected < 0) {
      $("#errors").textContent = "Select a domain first.";
      return;
    }
    const args: Record<string, unknown> = { domid: selected };
    if (op === "mem-set") args.mib = Number(($("#memset") as HTMLInputElement).value);
    if (op === "save") args.file = ($("#savefile") as HTMLInputElement).value;
    void act(op, args);
  };
}
$("#filter").addEventListener("input", applyFilter);

$("#use-example").onclick = () => {
  const name = ($("#example") as HTMLSelectElement).value;
  ($("#cfg") as HTMLTextAreaElement).value = examples.get(name) ?? "";
};
$("#create-btn").onclick = async () => {
  const text = ($("#cfg") as HTMLTextAreaElement).value;
  const paused = ($("#paused") as HTMLInputElement).checked;
  const example = ($("#example") as HTMLSelectElement).value;
  const r = await act("create", text.trim() ? { cfg: text, paused } : { example, paused });
  const domid = (r.ok as { domid?: number } | undefined)?.domid;
  if (domid !== undefined) {
    // The new row comes with the next update; select it when it is there.
    const wait = (): void => {
      if (rows.has(domid)) select(domid);
      else setTimeout(wait, 20);
    };
    wait();
  }
};
const examples = new Map<string, string>();

// ---- consoles -------------------------------------------------------------------

const term = new Terminal({ convertEol: false, fontSize: 13, scrollback: 5000, cursorBlink: true });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($("#terminal"));
fit.fit();
window.addEventListener("resize", () => fit.fit());
let consoleDomid = -1;
/** Keystroke → echo times (ms), for the benchmark: when a key went, and the first output after it. */
const echo = { pendingAt: -1, samples: [] as number[] };
(window as unknown as { tsxenStats: unknown }).tsxenStats = { echo: echo.samples };
term.onData((data) => {
  if (consoleDomid < 0) return;
  echo.pendingAt = performance.now();
  ws.send(JSON.stringify({ op: "input", data }));
});

function attachConsole(): void {
  term.reset();
  consoleDomid = -1;
  if (selected < 0) {
    void request("console", { domid: -1 });
    $("#console-title").textContent = "Select a domain to attach its console";
    return;
  }
  const type = ($("#console-type") as HTMLSelectElement).value;
  const domid = selected;
  void request("console", { domid, ...(type ? { type } : {}) }).then((r) => {
    if (typeof r.error === "string") {
      $("#console-title").textContent = r.error;
      return;
    }
    consoleDomid = domid;
    const name = rows.get(domid)?.row.name ?? String(domid);
    $("#console-title").textContent =
      `${name} (domain ${domid}): ${(r.ok as { type: string }).type} console`;
  });
}
$("#console-type").addEventListener("change", attachConsole);

// ---- hypervisor console ------------------------------------------------------------

const MAX_DMESG = 256 * 1024;
function dmesg(text: string): void {
  const pre = $("#dmesg");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  let t = (pre.textContent ?? "") + text;
  if (t.length > MAX_DMESG) t = t.slice(t.length - MAX_DMESG);
  pre.textContent = t;
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

// ---- xenstore ------------------------------------------------------------------------

const xs = new XenstoreView($("#xstree"), $("#xs-inflight"), {
  open: (path) => void request("xs-open", { path }),
  close: (path) => void request("xs-close", { path }),
  pick: (path, value) => {
    ($("#xs-path") as HTMLInputElement).value = path;
    ($("#xs-value") as HTMLInputElement).value = value;
  },
});
$("#xs-write").onclick = () =>
  void act("xs-write", {
    path: ($("#xs-path") as HTMLInputElement).value,
    value: ($("#xs-value") as HTMLInputElement).value,
  });
$("#xs-rm").onclick = () => void act("xs-rm", { path: ($("#xs-path") as HTMLInputElement).value });

// ---- plumbing ---------------------------------------------------------------------------

function refreshPlumbChoices(): void {
  const doms: Array<[string, string]> = [...rows.values()].map((e) => [
    String(e.row.domid),
    `${e.row.name} (${e.row.domid})`,
  ]);
  for (const id of ["#plumb-a", "#plumb-b"]) {
    const s = $(id) as HTMLSelectElement;
    const keep = s.value;
    const want: Array<[string, string]> =
      id === "#plumb-b" ? [["", "(only the first)"], ...doms] : doms;
    const same =
      s.options.length === want.length &&
      [...s.options].every((o, i) => o.value === want[i]![0] && o.text === want[i]![1]);
    if (same) continue;
    s.replaceChildren(...want.map(([v, t]) => el("option", { value: v }, t)));
    s.value = want.some(([v]) => v === keep) ? keep : (want[0]?.[0] ?? "");
  }
}
function askPlumbing(): void {
  const a = ($("#plumb-a") as HTMLSelectElement).value;
  const b = ($("#plumb-b") as HTMLSelectElement).value;
  if (a === "") return;
  const domids = [Number(a), ...(b !== "" && b !== a ? [Number(b)] : [])];
  void request("plumbing", { domids });
}
$("#plumb-a").addEventListener("change", askPlumbing);
$("#plumb-b").addEventListener("change", askPlumbing);

// ---- tabs ------------------------------------------------------------------------------------

for (const b of document.querySelectorAll<HTMLButtonElement>("#tabs button")) {
  b.onclick = () => {
    for (const x of document.querySelectorAll("#tabs button"))
      x.classList.toggle("active", x === b);
    for (const v of document.querySelectorAll(".view"))
      v.classList.toggle("active", v.id === `view-${b.dataset.tab}`);
    if (b.dataset.tab === "console") fit.fit();
    if (b.dataset.tab === "xenstore") {
      xs.start();
      void request("xs-inflight", { on: true });
    }
    if (b.dataset.tab === "plumbing") askPlumbing();
  };
}

// ---- what the host sends -------------------------------------------------------------------

function handle(m: Msg): void {
  switch (m.t) {
    case "hello": {
      const h = m.host as { hostname: string; cpus: number; memKiB: number; boot: string };
      $("#hostinfo").textContent =
        `${h.hostname}: ${h.cpus} CPUs, ${Math.round(h.memKiB / 1024)} MiB; up since ${h.boot}`;
      const ex = $("#example") as HTMLSelectElement;
      const list = m.examples as Record<string, string>;
      ex.replaceChildren(...Object.keys(list).map((n) => el("option", { value: n }, n)));
      for (const [n, text] of Object.entries(list)) examples.set(n, text);
      break;
    }
    case "rows":
      updateRows(m.rows as Row[], m.gone as number[]);
      break;
    case "tick":
      if (m.domid === selected)
        graphs.push(m.at as number, m.cpu as number, m.vbd as number, m.net as number);
      break;
    case "history":
      if (m.domid === selected && m.h) graphs.load(m.h as History);
      break;
    case "dmesg":
      dmesg(m.text as string);
      break;
    case "console":
      if (m.domid === consoleDomid) {
        const data = m.data as string;
        if (echo.pendingAt >= 0) {
          echo.samples.push(performance.now() - echo.pendingAt);
          echo.pendingAt = -1;
        }
        term.write(data);
      }
      break;
    case "console-closed":
      if (m.domid === consoleDomid) {
        term.write(`\r\n[console closed: ${m.reason as string}]\r\n`);
        consoleDomid = -1;
      }
      break;
    case "xs":
      xs.node(m.path as string, m.node as never);
      break;
    case "xs-child":
      xs.child(m.path as string, m.name as string, m.child as never);
      break;
    case "xs-inflight":
      xs.inflight(m.conns as never, m.total as number);
      break;
    case "plumbing":
      drawPlumbing($("#plumbing"), m.p as Plumbing);
      break;
    case "reply": {
      const w = waiting.get(m.id as number);
      waiting.delete(m.id as number);
      w?.(m);
      break;
    }
  }
}

connect();
