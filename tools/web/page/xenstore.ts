/**
 * The xenstore tree, as xenstore-ls -p shows it, kept live: a path opened
 * here is opened at the host, which then sends its node again whenever a
 * watch fires under it. Clicking a node picks it for editing.
 */
import { el } from "./dom.js";
import type { XsNodeView as NodeView } from "../protocol.js";

interface Child {
  value: string;
  perms: string;
  n: number;
}
interface Conn {
  name: string;
  domid: number;
  watches: Array<{ path: string; token: string }>;
  transactions: number[];
}

const join = (p: string, name: string): string => (p === "/" ? `/${name}` : `${p}/${name}`);

export class XenstoreView {
  /** Each shown node's line, by path. */
  private readonly items = new Map<
    string,
    {
      li: HTMLLIElement;
      label: HTMLSpanElement;
      ul: HTMLUListElement | undefined;
      open: boolean;
      child: Child;
    }
  >();
  private started = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly inflightEl: HTMLElement,
    private readonly host: {
      open(path: string): void;
      close(path: string): void;
      pick(path: string, value: string): void;
    },
  ) {}

  /** Opens the root the first time the tab is shown. */
  start(): void {
    if (this.started) return;
    this.started = true;
    const ul = el("ul");
    this.root.replaceChildren(ul);
    this.add(ul, "/", "/", { value: "", perms: "", n: 1 });
    this.toggle("/");
  }

  private add(ul: HTMLUListElement, path: string, name: string, c: Child): void {
    const label = el("span", { class: "xsnode" });
    const li = el("li", { "data-path": path }, label);
    const item = {
      li,
      label,
      ul: undefined as HTMLUListElement | undefined,
      open: false,
      child: c,
    };
    this.items.set(path, item);
    label.onclick = (e) => {
      e.stopPropagation();
      this.host.pick(path, item.child.value);
      if (item.child.n > 0 || item.open) this.toggle(path);
    };
    this.paint(path, name);
    // Children in the order the host lists them: appended as they come.
    ul.append(li);
  }

  private paint(path: string, name: string): void {
    const it = this.items.get(path)!;
    const c = it.child;
    const mark = c.n > 0 ? (it.open ? "▾ " : "▸ ") : "  ";
    it.label.textContent = `${mark}${name} = "${c.value}"`;
    it.label.append(el("span", { class: "perms" }, ` (${c.perms})`));
  }

  private toggle(path: string): void {
    const it = this.items.get(path);
    if (!it) return;
    it.open = !it.open;
    if (it.open) {
      it.ul = el("ul");
      it.li.append(it.ul);
      this.host.open(path);
    } else {
      this.forget(path);
      this.host.close(path);
    }
    this.paint(path, path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1));
  }

  /** Drops what is shown below `path` (closing it at the host too). */
  private forget(path: string): void {
    const it = this.items.get(path);
    if (!it) return;
    for (const p of [...this.items.keys()]) {
      if (p !== path && (p.startsWith(`${path}/`) || path === "/")) {
        if (this.items.get(p)!.open) this.host.close(p);
        this.items.delete(p);
      }
    }
    it.ul?.remove();
    it.ul = undefined;
  }

  /** An open node's listing: its children, as they are now. */
  node(path: string, n: NodeView | null): void {
    const it = this.items.get(path);
    if (!it) return;
    if (!n) {
      this.remove(path);
      return;
    }
    it.child = { value: n.value, perms: n.perms, n: n.children.length };
    if (it.open && it.ul) {
      const names = new Set(n.children.map((c) => c.name));
      for (const p of [...this.items.keys()]) {
        const parent = p.slice(0, p.lastIndexOf("/")) || "/";
        if (parent === path && p !== path && !names.has(p.slice(p.lastIndexOf("/") + 1)))
          this.remove(p);
      }
      for (const c of n.children) this.child(path, c.name, c);
    }
    this.paint(path, path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1));
  }

  /** One child of an open node changed, came or went (null). */
  child(parent: string, name: string, c: Child | null): void {
    const p = join(parent, name);
    const it = this.items.get(p);
    if (!c) {
      this.remove(p);
      return;
    }
    if (it) {
      it.child = c;
      this.paint(p, name);
      return;
    }
    const par = this.items.get(parent);
    if (!par?.open || !par.ul) return;
    this.add(par.ul, p, name, c);
  }

  private remove(path: string): void {
    const it = this.items.get(path);
    if (!it) return;
    this.forget(path);
    it.li.remove();
    this.items.delete(path);
  }

  inflight(conns: Conn[], total: number): void {
    const rows = conns
      .filter((c) => c.watches.length > 0 || c.transactions.length > 0)
      .map((c) =>
        el(
          "div",
          { class: "conn-item" },
          el("b", {}, `${c.name} (domain ${c.domid})`),
          ...c.watches.map((w) =>
            el("div", { class: "watch" }, `watch ${w.path} token ${w.token}`),
          ),
          ...c.transactions.map((t) => el("div", { class: "tx" }, `transaction ${t} open`)),
        ),
      );
    this.inflightEl.replaceChildren(el("div", { class: "muted" }, `${total} connections`), ...rows);
  }
}
