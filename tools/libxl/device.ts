/**
 * libxl's generic device plumbing (libxl_device.c) for split drivers: the
 * backend directory under Dom0 and the frontend directory under the guest,
 * as xen-doc `misc/xenstore-paths` lays them out, with their permissions
 * (each side owns its directory, the other may read it); removal as libxl
 * does it (online 0 and state Closing, a wait for Closed, then both
 * directories go). libxl's own record of each device goes under
 * /libxl/<domid>/device/<type>/<devid> (the paths of both ends and the
 * backend's settings), as libxl keeps it to find its devices again.
 */
import type { Host } from "../host/host.js";
import { domainPath } from "../xenstored/path.js";
import { DOM0 } from "../xenstored/perms.js";
import {
  XenbusStateClosed,
  XenbusStateClosing,
  XenbusStateInitialising,
} from "../../xen/include/public/io/xenbus.js";

export function devicePaths(
  type: string,
  domid: number,
  devid: number,
): { backend: string; frontend: string } {
  return {
    backend: `/local/domain/0/backend/${type}/${domid}/${devid}`,
    frontend: `${domainPath(domid)}/device/${type}/${devid}`,
  };
}

/** Writes a device's two directories; the backend's last, so its driver sees it whole. */
export function addDevice(
  host: Host,
  type: string,
  domid: number,
  devid: number,
  backendNodes: Record<string, string>,
  frontendNodes: Record<string, string>,
  /**
   * A restored or migrated domain's frontend as it was (frontendTree: its
   * rings, port, features and state, written by the guest), written before
   * the backend's directory so that the backend attaches to those rings.
   */
  restoredFrontend?: Record<string, string>,
): void {
  const xs = host.xenstored;
  const { backend, frontend } = devicePaths(type, domid, devid);
  if (xs.store.get(backend) || xs.store.get(frontend)) {
    throw new Error(`libxl: domain ${domid} already has a ${type} device ${devid}`);
  }
  // Permissions first: the nodes written below inherit them.
  xs.mkdir(xs.store, DOM0, frontend);
  xs.setPerms(xs.store, DOM0, frontend, [
    { domid, access: 0 },
    { domid: 0, access: 1 },
  ]);
  xs.mkdir(xs.store, DOM0, backend);
  xs.setPerms(xs.store, DOM0, backend, [
    { domid: 0, access: 0 },
    { domid, access: 1 },
  ]);
  const front = {
    backend,
    "backend-id": "0",
    ...frontendNodes,
    state: String(XenbusStateInitialising),
  };
  for (const [k, v] of Object.entries(front)) xs.writeText(`${frontend}/${k}`, v);
  for (const [k, v] of Object.entries(restoredFrontend ?? {}))
    if (k !== "backend" && k !== "backend-id") xs.writeText(`${frontend}/${k}`, v);
  const back = {
    frontend,
    "frontend-id": String(domid),
    ...backendNodes,
    online: "1",
    state: String(XenbusStateInitialising),
  };
  const record = `/libxl/${domid}/device/${type}/${devid}`;
  for (const [k, v] of Object.entries({
    frontend,
    backend,
    "frontend-id": String(domid),
    "backend-id": "0",
    ...backendNodes,
  }))
    xs.writeText(`${record}/${k}`, v);
  for (const [k, v] of Object.entries(back)) xs.writeText(`${backend}/${k}`, v);
}

/**
 * Asks the backend to close, waits up to `timeoutMs` for Closed (not at all
 * when the domain has shut down: its frontend cannot answer), then removes
 * both directories, as libxl does after its timeout too.
 */
export async function removeDevice(
  host: Host,
  type: string,
  domid: number,
  devid: number,
  timeoutMs: number,
): Promise<void> {
  const xs = host.xenstored;
  const { backend, frontend } = devicePaths(type, domid, devid);
  if (!xs.store.get(backend))
    throw new Error(`libxl: domain ${domid} has no ${type} device ${devid}`);
  xs.writeText(`${backend}/online`, "0");
  xs.writeText(`${backend}/state`, String(XenbusStateClosing));
  const d = host.hv.domains.get(domid);
  const end = d && !d.isShutdown ? Date.now() + timeoutMs : 0;
  while (Date.now() < end && xs.readText(`${backend}/state`) !== String(XenbusStateClosed)) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const record = `/libxl/${domid}/device/${type}/${devid}`;
  const error = `/local/domain/0/error/backend/${type}/${domid}/${devid}`;
  for (const p of [frontend, backend, record, error]) if (xs.store.get(p)) xs.rm(xs.store, DOM0, p);
}

/** A domain's devices of `type`: each frontend directory's nodes, by devid. */
export function listDevices(
  host: Host,
  type: string,
  domid: number,
): Array<{ devid: number; node: (k: string) => string | undefined }> {
  const xs = host.xenstored;
  const dir = `${domainPath(domid)}/device/${type}`;
  return [...(xs.store.get(dir)?.children ?? [])].map((dev) => ({
    devid: Number(dev),
    node: (k: string) => xs.readText(`${dir}/${dev}/${k}`),
  }));
}

/**
 * Every node under a device's frontend directory, by path relative to it
 * (`state`, `ring-ref`, `queue-0/tx-ring-ref`...), but the two the
 * toolstack writes for the backend's place (`backend`, `backend-id`).
 */
export function frontendTree(
  host: Host,
  type: string,
  domid: number,
  devid: number,
): Record<string, string> {
  const xs = host.xenstored;
  const { frontend } = devicePaths(type, domid, devid);
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    const path = rel ? `${frontend}/${rel}` : frontend;
    if (rel && rel !== "backend" && rel !== "backend-id") out[rel] = xs.readText(path) ?? "";
    for (const c of xs.store.get(path)?.children ?? []) walk(rel ? `${rel}/${c}` : String(c));
  };
  walk("");
  return out;
}
