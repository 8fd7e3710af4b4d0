/**
 * Draws the results JSON as one SVG: a panel per case, a bar per target, the
 * relay's bar highlighted, each bar labelled with its median and its ratio to direct.
 * `deno run -A bench/chart.ts bench/results/full.json docs/benchmarks.svg`
 * @module
 */

interface TargetSummary {
  median: number;
  min: number;
  max: number;
  runs?: Record<string, unknown>[];
}
interface CaseResult {
  title: string;
  unit: string;
  better: "higher" | "lower";
  targets: Record<string, TargetSummary>;
  /** Targets ("*": the whole case) that could not run on that build, and why. */
  skipped?: Record<string, string>;
  /** Figures across targets of the same run (e.g. room history on against off). */
  derived?: Record<string, number>;
}
/** The part of a results file the chart reads. */
export interface Report {
  mode: string;
  started_at: string;
  cases: Record<string, CaseResult>;
  versions: Record<string, string>;
  /** A full run with `--only` merged into the last full results: which cases, and when. */
  rerun?: { cases: string[]; at: string };
  /** Earlier such merges, oldest first (each case's figures are from the latest that names it). */
  reruns_before?: { cases: string[]; at: string }[];
}

const LABELS: Record<string, string> = {
  direct: "direct (no relay)",
  naive_deno: "naive Deno relay",
  node_ws: "Node ws relay",
  nginx: "nginx",
  relay: "this relay",
  relay_policy: "this relay, policy on",
  relay_all: "this relay, every v2 feature on",
  rooms_deno_map: "Deno Map rooms",
  rooms_node_ws: "Node ws rooms",
  rooms_socketio: "Socket.IO rooms",
  relay_same_instance: "this relay, same instance",
  relay_across_bus: "this relay, across the bus",
  relay_history_off: "this relay, history off",
  relay_history: "this relay, history on",
  relay_recover_10: "10 missed",
  relay_recover_100: "100 missed",
  relay_recover_1000: "1,000 missed",
  relay_ws_members: "this relay, WS members",
  relay_sse: "this relay, SSE followers",
  relay_captions_off: "this relay, rooms on, no ?room=",
  relay_captions: "this relay, captions to 20",
};
const COLORS: Record<string, string> = {
  direct: "#9aa5b1",
  naive_deno: "#7c93c3",
  node_ws: "#8fbf8f",
  nginx: "#d9a45b",
  relay: "#d6336c",
  relay_policy: "#a61e4d",
  relay_all: "#5f3dc4",
  rooms_deno_map: "#7c93c3",
  rooms_node_ws: "#8fbf8f",
  rooms_socketio: "#c9a0dc",
  relay_same_instance: "#d6336c",
  relay_across_bus: "#a61e4d",
  relay_history_off: "#d6336c",
  relay_history: "#5f3dc4",
  relay_recover_10: "#5f3dc4",
  relay_recover_100: "#5f3dc4",
  relay_recover_1000: "#5f3dc4",
  relay_ws_members: "#d6336c",
  relay_sse: "#a61e4d",
  relay_captions_off: "#d6336c",
  relay_captions: "#a61e4d",
};

/** Room cases whose "relay" target is one side of a comparison, named as such in the chart. */
const RELAY_RENAMED: Record<string, string> = {
  room_history: "relay_history_off",
  room_sse_memory: "relay_ws_members",
  voice_captions: "relay_captions_off",
};

/** The numbers of missed broadcasts the recovery case (R5) times. */
export const RECOVERY_MISSED = [10, 100, 1000] as const;

function summary(values: number[]): TargetSummary {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  const median = sorted.length % 2
    ? sorted[Math.floor(mid)]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

/** A figure of every run of `c`, as a case of its own. */
function drawnOut(
  c: CaseResult,
  key: string,
  extra: Partial<CaseResult>,
): CaseResult {
  const targets: Record<string, TargetSummary> = {};
  for (const [t, s] of Object.entries(c.targets)) {
    targets[t] = summary((s.runs ?? []).map((r) => Number(r[key])));
  }
  return { ...c, ...extra, targets };
}

/**
 * The cases, with latency's p99 and p99.9 drawn out of its runs as cases of
 * their own, and so the room fan-out's latencies and CPU per delivery, and the
 * bus case's latency on the same instance against across the bus. Cases that
 * did not run (skipped) are left out.
 */
export function expandCases(report: Report): [string, CaseResult][] {
  const out: [string, CaseResult][] = [];
  for (const [name, raw] of Object.entries(report.cases)) {
    const renamed = RELAY_RENAMED[name];
    const c: CaseResult = renamed && raw.targets.relay
      ? {
        ...raw,
        targets: Object.fromEntries(
          Object.entries(raw.targets).map(([t, s]) => [t === "relay" ? renamed : t, s]),
        ),
      }
      : raw;
    if (name === "room_recovery") {
      // One panel: the time to recover, by how many broadcasts were missed.
      const runs = c.targets.relay_history?.runs ?? [];
      const targets: Record<string, TargetSummary> = {};
      for (const n of RECOVERY_MISSED) {
        const values = runs.map((r) => Number(r[`recover_${n}_ms`])).filter(Number.isFinite);
        if (values.length) targets[`relay_recover_${n}`] = summary(values);
      }
      if (Object.keys(targets).length) {
        out.push([name, {
          ...c,
          title: c.title.replace(/ and the last of .*$/, " and the end of the replay, by missed"),
          targets,
        }]);
      }
      continue;
    }
    if (name === "room_bus") {
      const relay = c.targets.relay;
      if (!relay) continue;
      for (const p of ["p50", "p99"]) {
        const runs = relay.runs ?? [];
        out.push([`room_bus_${p}`, {
          ...c,
          title: c.title.replace(/: .*$/, `: ${p} to each receiver`),
          better: "lower",
          targets: {
            relay_same_instance: summary(
              runs.map((r) => Number(r[`local_${p}_us`])),
            ),
            relay_across_bus: summary(
              runs.map((r) => Number(r[`bus_${p}_us`])),
            ),
          },
        }]);
      }
      continue;
    }
    if (Object.keys(c.targets).length === 0) continue;
    out.push([name, c]);
    if (name === "room_fanout" || name === "room_history") {
      for (
        const [key, label] of [
          ["p50_us", "p50 to each receiver, one broadcast in flight"],
          ["p99_us", "p99 to each receiver, one broadcast in flight"],
          ["server_cpu_us_per_delivery", "server CPU per delivery"],
        ] as const
      ) {
        out.push([
          `${name}_${key}`,
          drawnOut(c, key, {
            title: `${c.title.replace(/,? ?\(.*$/, "")}: ${label}`,
            unit: key === "server_cpu_us_per_delivery" ? "µs CPU" : "µs",
            better: "lower",
          }),
        ]);
      }
    }
    if (name !== "latency") continue;
    for (
      const [key, label] of [["p99_us", "p99"], ["p999_us", "p99.9"]] as const
    ) {
      const targets: Record<string, TargetSummary> = {};
      for (const [t, s] of Object.entries(c.targets)) {
        targets[t] = summary((s.runs ?? []).map((r) => Number(r[key])));
      }
      out.push([`${name}_${key}`, {
        ...c,
        title: c.title.replace("(p50)", `(${label})`),
        targets,
      }]);
    }
  }
  return out;
}

const esc = (s: string) => s.replaceAll("&", "&amp;").replaceAll("<", "&lt;");

/** Formats a figure with 3 significant digits, without exponent notation. */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return "n/a";
  const abs = Math.abs(n);
  if (abs >= 100) return Math.round(n).toLocaleString("en-US");
  if (abs >= 10) return n.toFixed(1);
  if (abs >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

/** The SVG for a report. */
export function renderChart(report: Report): string {
  const width = 760;
  const barH = 16;
  const labelW = 150;
  const chartW = 420;
  const parts: string[] = [];
  let y = 56;
  for (const [name, c] of expandCases(report)) {
    const entries = Object.entries(c.targets);
    const max = Math.max(...entries.map(([, s]) => s.median), 1e-9);
    const direct = ["memory", "voice", "slow_reader"].includes(name) ||
        name.startsWith("room_")
      ? undefined
      : c.targets.direct?.median;
    parts.push(
      `<text x="12" y="${y}" font-weight="bold">${esc(c.title)}</text>`,
      `<text x="${width - 12}" y="${y}" text-anchor="end" fill="#555">${
        esc(c.unit)
      }, ${c.better} is better</text>`,
    );
    y += 8;
    for (const [target, s] of entries) {
      const w = Math.max(1, (s.median / max) * chartW);
      const ratio = direct && target !== "direct"
        ? ` (${fmt(c.better === "higher" ? s.median / direct : direct / s.median)}x direct)`
        : "";
      const bold = target === "relay" ? ` font-weight="bold"` : "";
      parts.push(
        `<text x="12" y="${y + 12}"${bold}>${esc(LABELS[target] ?? target)}</text>`,
        `<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${
          COLORS[target] ?? "#999"
        }"/>`,
        `<text x="${labelW + w + 6}" y="${y + 12}"${bold}>${fmt(s.median)}${esc(ratio)}</text>`,
      );
      y += barH + 4;
    }
    y += 26;
  }
  const height = y;
  const head = `Relay vs. peers, same machine, same echo upstream (${esc(report.mode)} run ${
    esc(report.started_at.slice(0, 10))
  }; medians)`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">\n` +
    `<rect width="100%" height="100%" fill="white"/>\n` +
    `<text x="12" y="24" font-size="15" font-weight="bold">${head}</text>\n` +
    `<text x="12" y="40" fill="#555">Deno ${esc(report.versions.deno ?? "")}, ${
      esc(report.versions.node ?? "")
    } (ws ${esc(report.versions.ws ?? "")}), ${esc(report.versions.nginx ?? "")}</text>\n` +
    parts.join("\n") + "\n</svg>\n";
}

if (import.meta.main) {
  const [input = "bench/results/full.json", output = "docs/benchmarks.svg"] = Deno.args;
  await Deno.writeTextFile(
    output,
    renderChart(JSON.parse(await Deno.readTextFile(input))),
  );
}
