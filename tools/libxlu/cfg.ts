/**
 * The xl.cfg syntax (Xen's libxlutil, `libxlu_cfg*`; xen-doc `man/xl.cfg.5`):
 * `KEY = VALUE` settings separated by newlines or semicolons, `#` comments,
 * and values that are strings (single or double quotes), numbers (decimal,
 * octal with a leading 0, hexadecimal with 0x), or lists `[ v, v, ... ]`,
 * which may be nested, span lines and end with a comma. `KEY += VALUE`
 * appends to a list or a string set earlier, as libxlutil allows.
 *
 * Pure: text in, settings or an error out. Errors name the file, line and
 * column and what was expected there.
 */

/** A parsed value, with where it was written. */
export type CfgValue =
  | { kind: "string"; value: string; line: number; col: number }
  | { kind: "number"; value: number; text: string; line: number; col: number }
  | { kind: "list"; items: CfgValue[]; line: number; col: number };

/** One setting: the key, its value, where the key was. */
export interface CfgSetting {
  key: string;
  value: CfgValue;
  line: number;
  col: number;
}

/** A syntax error: `file:line:col: message`. */
export class CfgError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly what: string,
  ) {
    super(`${file}:${line}:${col}: ${what}`);
  }
}

/** Parses `text` (named `file` in errors); the last setting of a key wins, `+=` appends. */
export function parseCfg(text: string, file = "config"): Map<string, CfgSetting> {
  let i = 0;
  let line = 1;
  let col = 1;
  const fail = (what: string): never => {
    throw new CfgError(file, line, col, what);
  };
  const peek = (): string => text[i] ?? "";
  const next = (): string => {
    const c = text[i++] ?? "";
    if (c === "\n") {
      line++;
      col = 1;
    } else col++;
    return c;
  };
  // Blanks and comments; newlines too when `newlines`.
  const skip = (newlines: boolean): void => {
    for (;;) {
      const c = peek();
      if (c === " " || c === "\t" || c === "\r" || (newlines && c === "\n")) next();
      else if (c === "#") while (peek() !== "" && peek() !== "\n") next();
      else return;
    }
  };
  const describe = (c: string): string =>
    c === "" ? "the end of the file" : c === "\n" ? "a new line" : `'${c}'`;

  const string = (): CfgValue => {
    const at = { line, col };
    const q = next();
    let out = "";
    for (;;) {
      const c = next();
      if (c === "" || c === "\n") {
        throw new CfgError(file, at.line, at.col, "an unterminated string");
      }
      if (c === q) break;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = next();
      const simple: Record<string, string> = {
        n: "\n",
        t: "\t",
        r: "\r",
        "\\": "\\",
        '"': '"',
        "'": "'",
      };
      if (simple[e] !== undefined) out += simple[e];
      else if (e === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i, i + 2)))
        out += String.fromCharCode(parseInt(next() + next(), 16));
      else if (/[0-7]/.test(e)) {
        let o = e;
        while (o.length < 3 && /[0-7]/.test(peek())) o += next();
        out += String.fromCharCode(parseInt(o, 8) & 0xff);
      } else out += e;
    }
    return { kind: "string", value: out, ...at };
  };

  const number = (): CfgValue => {
    const at = { line, col };
    let t = "";
    while (/[0-9a-fA-FxX]/.test(peek())) t += next();
    let v: number;
    if (/^0[xX][0-9a-fA-F]+$/.test(t)) v = parseInt(t.slice(2), 16);
    else if (/^0[0-7]+$/.test(t)) v = parseInt(t.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(t)) v = Number(t);
    else {
      throw new CfgError(
        file,
        at.line,
        at.col,
        `'${t}' is not a number (decimal, 0-prefixed octal or 0x hexadecimal)`,
      );
    }
    return { kind: "number", value: v, text: t, ...at };
  };

  const value = (): CfgValue => {
    const c = peek();
    if (c === '"' || c === "'") return string();
    if (/[0-9]/.test(c)) return number();
    if (c === "[") {
      const at = { line, col };
      next();
      const items: CfgValue[] = [];
      for (;;) {
        skip(true);
        if (peek() === "]") break;
        items.push(value());
        skip(true);
        if (peek() === ",") next();
        else if (peek() !== "]")
          fail(
            `expected ',' or ']' in the list opened at ${at.line}:${at.col}, found ${describe(peek())}`,
          );
      }
      next();
      return { kind: "list", items, ...at };
    }
    return fail(`expected a value (a quoted string, a number or a [list]), found ${describe(c)}`);
  };

  const out = new Map<string, CfgSetting>();
  for (;;) {
    skip(true);
    while (peek() === ";") {
      next();
      skip(true);
    }
    if (peek() === "") return out;
    const at = { line, col };
    let key = "";
    if (!/[A-Za-z_]/.test(peek())) fail(`expected a setting name, found ${describe(peek())}`);
    while (/[A-Za-z0-9_.]/.test(peek())) key += next();
    skip(false);
    let append = false;
    if (peek() === "+") {
      next();
      append = true;
    }
    if (peek() !== "=") fail(`expected '=' after '${key}', found ${describe(peek())}`);
    next();
    skip(false);
    let v = value();
    skip(false);
    if (peek() !== "" && peek() !== "\n" && peek() !== ";")
      fail(`expected a new line or ';' after the value of '${key}', found ${describe(peek())}`);
    const prev = out.get(key);
    if (append && prev) {
      if (prev.value.kind === "list" && v.kind === "list")
        v = { ...prev.value, items: [...prev.value.items, ...v.items] };
      else if (prev.value.kind === "string" && v.kind === "string")
        v = { ...prev.value, value: prev.value.value + v.value };
      else
        throw new CfgError(
          file,
          at.line,
          at.col,
          `'${key} +=' needs a ${prev.value.kind} like its first setting`,
        );
    }
    out.set(key, { key, value: v, ...at });
  }
}
