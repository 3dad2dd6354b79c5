/**
 * The selected domain's graphs (uPlot): CPU % and I/O (block sectors/s,
 * network bytes/s) over the last minutes, a point a second.
 */
import uPlot from "uplot";

const KEEP = 300;

export class Graphs {
  private readonly t: number[] = [];
  private readonly cpu: number[] = [];
  private readonly vbd: number[] = [];
  private readonly net: number[] = [];
  private readonly cpuPlot: uPlot;
  private readonly ioPlot: uPlot;

  constructor(parent: HTMLElement) {
    const width = Math.max(280, parent.clientWidth - 8);
    const common = { width, height: 90, legend: { show: false }, cursor: { show: false } };
    this.cpuPlot = new uPlot(
      {
        ...common,
        title: "CPU %",
        axes: [{ show: false }, { size: 40 }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(10, max)] } },
        series: [{}, { label: "CPU %", stroke: "#2a7ae2", fill: "rgba(42,122,226,0.15)" }],
      },
      [[], []],
      parent,
    );
    this.ioPlot = new uPlot(
      {
        ...common,
        title: "I/O: block sectors/s (red), network bytes/s (green)",
        axes: [{ show: false }, { size: 40 }],
        scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
        series: [
          {},
          { label: "VBD sectors/s", stroke: "#c0392b" },
          { label: "NET bytes/s", stroke: "#27ae60" },
        ],
      },
      [[], [], []],
      parent,
    );
  }

  clear(): void {
    for (const a of [this.t, this.cpu, this.vbd, this.net]) a.length = 0;
    this.redraw();
  }

  load(h: { t: number[]; cpu: number[]; vbd: number[]; net: number[] }): void {
    this.clear();
    h.t.forEach((t, i) => this.add(t, h.cpu[i]!, h.vbd[i]!, h.net[i]!));
    this.redraw();
  }

  push(t: number, cpu: number, vbd: number, net: number): void {
    this.add(t, cpu, vbd, net);
    this.redraw();
  }

  private add(t: number, cpu: number, vbd: number, net: number): void {
    if (this.t.length > 0 && t <= this.t[this.t.length - 1]!) return;
    this.t.push(t / 1000);
    this.cpu.push(cpu);
    this.vbd.push(vbd);
    this.net.push(net);
    if (this.t.length > KEEP) for (const a of [this.t, this.cpu, this.vbd, this.net]) a.shift();
  }

  private redraw(): void {
    this.cpuPlot.setData([this.t, this.cpu]);
    this.ioPlot.setData([this.t, this.vbd, this.net]);
  }
}
