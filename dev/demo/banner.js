// The banner above the page (#banner): one sentence on what just happened
// that the panels alone would not make plain (a refusal, a resume, a budget).
import { $, demo } from "./state.js";

/** Shows one sentence above the page; `kind` is "info", "warn" or "bad"; null hides it. */
export function showBanner(kind, text) {
  demo.banner = kind ? { kind, text } : null;
  const banner = $("banner");
  banner.hidden = !kind;
  banner.className = `banner ${kind ?? ""}`;
  banner.textContent = text ?? "";
}
