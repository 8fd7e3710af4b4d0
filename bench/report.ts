/**
 * Renders the results JSON as the Markdown tables of docs/BENCHMARKS.md, between
 * its `<!-- bench:table:start -->` and `<!-- bench:table:end -->` markers.
 * `deno run -A bench/report.ts [bench/results/full.json] [docs/BENCHMARKS.md]`
 * @module
 */
import { expandCases, fmt, RECOVERY_MISSED, type Report } from "./chart.ts";

const ORDER = [
  "direct",
  "naive_deno",
  "node_ws",
  "nginx",
  "relay",
  "relay_all",
];
const NAMES: Record<string, string> = {
  direct: "direct",
  naive_deno: "naive Deno relay",
  node_ws: "Node ws relay",
  nginx: "nginx",
  relay: "**this relay**",
  relay_all: "this relay, all v2 features",
};

/** Cases with tables of their own, not in the table of cases 1-7. */
const OWN_SECTION = /^(room_|voice_captions)/;

/** Cases where "direct" is the upstream's own figure, not a relay: no ratio to it. */
const DIRECT_IS_REFERENCE = ["memory", "voice", "slow_reader"];

/** How much better `a` is than `b` (>1: `a` better), whichever way the metric points. */
function advantage(a: number, b: number, better: "higher" | "lower"): number {
  return better === "higher" ? a / b : b / a;
}

/** The Markdown for a report: figures with spread, then the relay against each peer. */
export function renderTables(report: Report): string {
  const cases = expandCases(report).filter(([name]) => !OWN_SECTION.test(name)).map((
    [name, c],
  ) => ({
    ...c,
    name,
    ratioToDirect: !DIRECT_IS_REFERENCE.includes(name),
  }));
  const lines = [
    "Median of the runs, [min-max] below it, and the ratio to direct in the same run",
    "(for latency, memory and CPU the ratio is inverted, so every ratio reads",
    '"fraction of direct\'s performance"). In cases 5-7 nothing is relayed on the direct',
    "path: its column is the upstream's own figure, for reference, with no ratio.",
    "",
    `| case | unit | ${ORDER.map((t) => NAMES[t]).join(" | ")} |`,
    `|---|---|${ORDER.map(() => "---:").join("|")}|`,
  ];
  for (const c of cases) {
    const direct = c.targets.direct?.median;
    const cells = ORDER.map((t) => {
      const s = c.targets[t];
      if (!s) return "-";
      const ratio = direct && c.ratioToDirect && t !== "direct"
        ? ` (${fmt(advantage(s.median, direct, c.better))}x)`
        : "";
      const spread = s.min === s.max ? "" : `<br>[${fmt(s.min)}-${fmt(s.max)}]`;
      const text = `${fmt(s.median)}${ratio}${spread}`;
      return t === "relay" ? `**${text}**` : text;
    });
    lines.push(
      `| ${c.title} | ${c.unit}, ${c.better} is better | ${cells.join(" | ")} |`,
    );
  }
  lines.push(
    "",
    "This relay against each peer, same run (above 1: this relay is better; the floor",
    "is 0.9 or more against the naive Deno relay and above 1 against the Node ws relay):",
    "",
    "| case | vs naive Deno relay | vs Node ws relay | vs nginx | vs direct |",
    "|---|---:|---:|---:|---:|",
  );
  const against = (target: string, extra: string[]) => {
    for (const c of cases) {
      const self = c.targets[target]?.median;
      if (self === undefined) continue;
      const cell = (t: string) => {
        const other = c.targets[t]?.median;
        return other === undefined ? "-" : `${fmt(advantage(self, other, c.better))}x`;
      };
      lines.push(
        `| ${c.title} | ${[...extra, "naive_deno", "node_ws", "nginx"].map(cell).join(" | ")} | ${
          c.ratioToDirect ? cell("direct") : "n/a"
        } |`,
      );
    }
  };
  against("relay", []);
  if (cases.some((c) => c.targets.relay_all)) {
    lines.push(
      "",
      "The relay with every v2 feature on (the example session policy, metering with a budget",
      "in PostgreSQL, resumable sessions with a fresh `?session=` per connection), same run,",
      "against the relay with them off and against each peer (case 3 is binary, which",
      "Realtime does not use and a policy refuses):",
      "",
      "| case | vs this relay, all off | vs naive Deno relay | vs Node ws relay | vs nginx | vs direct |",
      "|---|---:|---:|---:|---:|---:|",
    );
    against("relay_all", ["relay"]);
  }
  const voice = cases.find((c) => c.name === "voice");
  const on = voice?.targets.relay_policy;
  const off = voice?.targets.relay?.median;
  if (on && off) {
    lines.push(
      "",
      `With the example session policy on (every client message read strictly and checked), case 6 ` +
        `costs ${fmt(on.median)} CPU-s per 400 s session (${
          on.min === on.max ? "" : `[${fmt(on.min)}-${fmt(on.max)}], `
        }${fmt(on.median / off)}x the relay without), same run.`,
    );
  }
  lines.push(...renderCaptionsTable(report));
  lines.push(...renderRoomTables(report));
  return lines.join("\n");
}

/**
 * " (run of <date>)" for a case merged in from a later `--only` run (the
 * latest merge that names it), whose figures are not from the first run.
 */
function runOf(report: Report, name: string): string {
  const merges = [...(report.reruns_before ?? []), ...(report.rerun ? [report.rerun] : [])];
  const last = merges.filter((m) => m.cases.includes(name)).at(-1);
  return last ? ` (run of ${last.at.slice(0, 10)})` : "";
}

/** Case 6c: voice CPU without `?room=` and with captions into a room, and their ratio. */
export function renderCaptionsTable(report: Report): string[] {
  const c = report.cases.voice_captions;
  const off = c?.targets.relay;
  const on = c?.targets.relay_captions;
  if (!c || !off || !on) return [];
  const spread = (s: { min: number; max: number }) =>
    s.min === s.max ? "" : ` [${fmt(s.min)}-${fmt(s.max)}]`;
  const ratio = on.median / off.median;
  const d = c.derived ?? {};
  const target = d.target_ratio_at_most ?? 1.15;
  const paired = d.paired_ratio_median === undefined
    ? ""
    : `<br>per repetition ${fmt(d.paired_ratio_median)}x [${fmt(d.paired_ratio_min ?? NaN)}-${
      fmt(d.paired_ratio_max ?? NaN)
    }]`;
  const members = runMedian(on.runs, "caption_members");
  const heard = (runs: Record<string, unknown>[] | undefined) =>
    `${fmt(runMedian(runs, "caption_deltas_received") / members)} deltas + ${
      fmt(runMedian(runs, "captions_received") / members)
    } finished`;
  return [
    "",
    `${c.title}${
      runOf(report, "voice_captions")
    }; the same relay (\`RELAY_ROOMS=open\`, \`RELAY_ROOMS_BUS=off\`) in the same run, ${
      members.toLocaleString("en-US")
    } idle members joined on both sides:`,
    "",
    "| 6c | CPU-s per 400 s session | captions per member (median run) |",
    "|---|---:|---:|",
    `| without \`?room=\` | ${fmt(off.median)}${spread(off)} | ${heard(off.runs)} |`,
    `| with \`?room=\`, captions to the room | ${fmt(on.median)}${spread(on)} | ${
      heard(on.runs)
    } |`,
    `| captions against without | ${fmt(ratio)}x (target at most ${fmt(target)}x: ${
      ratio <= target ? "met" : "not met"
    })${paired} | - |`,
  ];
}

const ROOM_ORDER = [
  "rooms_deno_map",
  "rooms_node_ws",
  "rooms_socketio",
  "relay",
];
const ROOM_NAMES: Record<string, string> = {
  rooms_deno_map: "Deno Map rooms",
  rooms_node_ws: "Node ws rooms",
  rooms_socketio: "Socket.IO rooms",
  relay: "**this relay**",
};

/** The rooms' tables: figures, the relay against each peer, the bus; skips said in words. */
export function renderRoomTables(report: Report): string[] {
  const cases = expandCases(report).filter(([name]) => name.startsWith("room_"));
  const lines: string[] = [];
  const skips = Object.entries(report.cases).filter(([name, c]) =>
    name.startsWith("room_") && c.skipped
  );
  if (cases.length === 0 && skips.length === 0) return lines;
  lines.push("", 'Rooms (see "Rooms" below), same run:', "");
  const fanout = cases.filter(([name]) => !name.startsWith("room_bus") && !OWN_TABLES.test(name));
  if (fanout.length) {
    lines.push(
      `| case | unit | ${ROOM_ORDER.map((t) => ROOM_NAMES[t]).join(" | ")} |`,
      `|---|---|${ROOM_ORDER.map(() => "---:").join("|")}|`,
    );
    for (const [, c] of fanout) {
      const cells = ROOM_ORDER.map((t) => {
        const s = c.targets[t];
        if (!s) return "-";
        const spread = s.min === s.max ? "" : `<br>[${fmt(s.min)}-${fmt(s.max)}]`;
        return t === "relay" ? `**${fmt(s.median)}${spread}**` : `${fmt(s.median)}${spread}`;
      });
      lines.push(
        `| ${c.title} | ${c.unit}, ${c.better} is better | ${cells.join(" | ")} |`,
      );
    }
    if (fanout.some(([, c]) => c.targets.relay)) {
      lines.push(
        "",
        "This relay's rooms against each peer's, same run (above 1: this relay is better; the goals",
        "are at least 0.9x the Deno Map pattern, at least 1.0x Node ws and ahead of Socket.IO in",
        "fan-out, and memory at most 1.25x the Deno pattern, i.e. a ratio of 0.8 or more):",
        "",
        "| case | vs Deno Map rooms | vs Node ws rooms | vs Socket.IO rooms |",
        "|---|---:|---:|---:|",
      );
      for (const [, c] of fanout) {
        const self = c.targets.relay?.median;
        if (self === undefined) continue;
        const cell = (t: string) => {
          const other = c.targets[t]?.median;
          return other === undefined ? "-" : `${fmt(advantage(self, other, c.better))}x`;
        };
        lines.push(
          `| ${c.title} | ${ROOM_ORDER.slice(0, 3).map(cell).join(" | ")} |`,
        );
      }
    }
  }
  const bus = report.cases.room_bus;
  const relay = bus?.targets.relay;
  if (bus && relay) {
    const runs = relay.runs ?? [];
    const med = (key: string) => {
      const v = runs.map((r) => Number(r[key])).sort((a, b) => a - b);
      return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
    };
    lines.push(
      "",
      "Across two relay instances (one sender on instance A; receivers on A and on B, which",
      "hears A through the Supabase Realtime stand-in, `tests/stand_ins/supabase_realtime.ts`, not",
      "Realtime itself), same broadcasts, µs:",
      "",
      "| to receivers | p50 | p99 |",
      "|---|---:|---:|",
      `| on A (same instance) | ${fmt(med("local_p50_us"))} | ${fmt(med("local_p99_us"))} |`,
      `| on B (across the bus) | ${fmt(med("bus_p50_us"))} | ${fmt(med("bus_p99_us"))} |`,
      `| what the bus adds | ${fmt(med("bus_added_p50_us"))} | ${fmt(med("bus_added_p99_us"))} |`,
    );
  }
  lines.push(...renderHistoryTables(report));
  for (const [, c] of skips) {
    for (const [t, why] of Object.entries(c.skipped ?? {})) {
      lines.push(
        "",
        `${c.title}: ${t === "*" ? "" : `${ROOM_NAMES[t] ?? t} `}skipped: ${why}.`,
      );
    }
  }
  return lines;
}

/** Room cases with tables of their own (R4-R6): this relay against itself, no peers. */
const OWN_TABLES = /^room_(history|recovery|sse_memory)/;

/** The median of one figure over a target's runs. */
function runMedian(runs: Record<string, unknown>[] | undefined, key: string): number {
  const v = (runs ?? []).map((r) => Number(r[key])).filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
}

/** R4-R6: history on against off, recovery times, SSE followers against WebSocket members. */
export function renderHistoryTables(report: Report): string[] {
  const lines: string[] = [];
  /** Said of a case merged in from a later `--only` run, whose figures are not from the first run. */
  const when = (name: string) => runOf(report, name);
  const history = report.cases.room_history;
  const off = history?.targets.relay;
  const on = history?.targets.relay_history;
  if (history && off && on) {
    const row = (label: string, key: string, compare: "difference" | "ratio") => {
      const a = runMedian(off.runs, key);
      const b = runMedian(on.runs, key);
      const diff = b - a;
      const cell = compare === "ratio" ? `${fmt(b / a)}x` : `${diff >= 0 ? "+" : ""}${fmt(diff)}`;
      return `| ${label} | ${fmt(a)} | ${fmt(b)} | ${cell} |`;
    };
    lines.push(
      "",
      `${history.title}${
        when("room_history")
      }; this relay alone, history off and on in the same run (medians of the`,
      "runs; on: each stored broadcast is appended in PostgreSQL, one round trip, before delivery):",
      "",
      "| R4 | history off | history on | on against off |",
      "|---|---:|---:|---:|",
      row("p50 to each receiver, one in flight, µs", "p50_us", "difference"),
      row("p99 to each receiver, one in flight, µs", "p99_us", "difference"),
      row(`deliveries/s, ${runMedian(on.runs, "senders")} in flight`, "deliveries_per_s", "ratio"),
      row("p50 to each receiver under that load, µs", "loaded_p50_us", "difference"),
      row("relay CPU per delivery, µs", "server_cpu_us_per_delivery", "ratio"),
      `| database CPU per delivery, µs | - | ${
        fmt(runMedian(on.runs, "database_cpu_us_per_delivery"))
      } | - |`,
    );
  }
  const recovery = report.cases.room_recovery?.targets.relay_history;
  if (recovery) {
    const runs = recovery.runs ?? [];
    lines.push(
      "",
      `${report.cases.room_recovery!.title}${
        when("room_recovery")
      }: by broadcasts missed, ms (median of the runs' medians; [fastest-slowest join]):`,
      "",
      "| missed | to room.joined | to the last replayed | replay per broadcast, µs |",
      "|---:|---:|---:|---:|",
      ...RECOVERY_MISSED.map((n) => {
        const low = Math.min(...runs.map((r) => Number(r[`recover_${n}_min_ms`])));
        const high = Math.max(...runs.map((r) => Number(r[`recover_${n}_max_ms`])));
        return `| ${n.toLocaleString("en-US")} | ${fmt(runMedian(runs, `joined_${n}_ms`))} | ${
          fmt(runMedian(runs, `recover_${n}_ms`))
        } [${fmt(low)}-${fmt(high)}] | ${fmt(runMedian(runs, `replay_${n}_us_per_msg`))} |`;
      }),
      "",
      `The room was filled through the server's publish at ${
        fmt(runMedian(runs, "fill_publishes_per_s"))
      } publishes/s (8 at a time, each one database round trip).`,
    );
  }
  const sse = report.cases.room_sse_memory;
  const ws = sse?.targets.relay;
  const follower = sse?.targets.relay_sse;
  if (sse && ws && follower) {
    const spread = (s: { min: number; max: number }) =>
      s.min === s.max ? "" : ` [${fmt(s.min)}-${fmt(s.max)}]`;
    lines.push(
      "",
      `${sse.title}${when("room_sse_memory")}:`,
      "",
      "| connection | KiB per idle connection |",
      "|---|---:|",
      `| WebSocket member | ${fmt(ws.median)}${spread(ws)} |`,
      `| SSE follower | ${fmt(follower.median)}${spread(follower)} |`,
      `| follower against member | ${fmt(follower.median / ws.median)}x |`,
    );
  }
  return lines;
}

const START = "<!-- bench:table:start -->";
const END = "<!-- bench:table:end -->";

/** Replaces the table block of `doc` (between the markers) with the report's tables. */
export function withTables(doc: string, report: Report): string {
  const from = doc.indexOf(START);
  const to = doc.indexOf(END);
  if (from < 0 || to < from) return doc;
  return doc.slice(0, from + START.length) + "\n" + renderTables(report) +
    "\n" +
    doc.slice(to);
}

if (import.meta.main) {
  const [input = "bench/results/full.json", output = "docs/BENCHMARKS.md"] = Deno.args;
  const report: Report = JSON.parse(await Deno.readTextFile(input));
  await Deno.writeTextFile(
    output,
    withTables(await Deno.readTextFile(output), report),
  );
}
