/**
 * Network interface specifications as xen-doc
 * `man/xl-network-configuration.5` defines them: comma-separated
 * `key=value` settings. Keys tsxen uses: mac (six hex octets; default a
 * random address in Xen's 00:16:3e OUI), bridge (default xenbr0), devid;
 * accepted and left to the backend: type (vif), model, vifname, script,
 * ip, rate, mtu, gatewaydev.
 */
import { randomBytes } from "node:crypto";

export interface NicSpec {
  mac: string;
  bridge: string;
  devid: number | undefined;
}

/** A random MAC in Xen's OUI (00:16:3e), as libxl picks one. */
export function randomXenMac(): string {
  const r = randomBytes(3);
  return `00:16:3e:${[...r].map((b, i) => (i === 0 ? b & 0x7f : b).toString(16).padStart(2, "0")).join(":")}`;
}

export function parseNicSpec(spec: string): NicSpec {
  const s = new Map<string, string>();
  for (const part of spec.split(",")) {
    const p = part.trim();
    if (p === "") continue;
    const eq = p.indexOf("=");
    if (eq <= 0) throw new Error(`vif spec '${spec}': '${p}' is not key=value`);
    s.set(p.slice(0, eq), p.slice(eq + 1));
  }
  const known = [
    "mac",
    "bridge",
    "devid",
    "type",
    "model",
    "vifname",
    "script",
    "ip",
    "rate",
    "mtu",
    "gatewaydev",
    "backend",
  ];
  for (const k of s.keys()) {
    if (!known.includes(k)) throw new Error(`vif spec '${spec}': unknown key '${k}'`);
  }
  const mac = (s.get("mac") ?? randomXenMac()).toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) {
    throw new Error(`vif spec '${spec}': mac '${mac}' is not six hex octets`);
  }
  if ((parseInt(mac.slice(0, 2), 16) & 1) !== 0) {
    throw new Error(`vif spec '${spec}': mac '${mac}' is a multicast address`);
  }
  const bridge = s.get("bridge") ?? "xenbr0";
  if (!/^[\w.-]{1,15}$/.test(bridge))
    throw new Error(`vif spec '${spec}': bridge '${bridge}' is not a bridge name`);
  const d = s.get("devid");
  if (d !== undefined && !/^\d{1,4}$/.test(d))
    throw new Error(`vif spec '${spec}': devid '${d}' is not a number`);
  return { mac, bridge, devid: d === undefined ? undefined : Number(d) };
}
