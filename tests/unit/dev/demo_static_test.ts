import assert from "node:assert/strict";
import { staticFileFor } from "../../../dev/demo_server.ts";

Deno.test("staticFileFor serves files directly in the demo folder by extension", () => {
  const cases: [string, string, string][] = [
    ["/", "index.html", "text/html; charset=utf-8"],
    ["/index.html", "index.html", "text/html; charset=utf-8"],
    ["/demo.js", "demo.js", "text/javascript; charset=utf-8"],
    ["/mic-worklet.js", "mic-worklet.js", "text/javascript; charset=utf-8"],
    ["/demo.css", "demo.css", "text/css; charset=utf-8"],
    ["/logo.PNG", "logo.PNG", "image/png"],
    ["/icon.svg", "icon.svg", "image/svg+xml"],
    ["/beep.wav", "beep.wav", "audio/wav"],
    ["/my%20file.js", "", ""],
  ];
  for (const [path, file, type] of cases) {
    const found = staticFileFor(path);
    assert.deepEqual(found, file ? { file, type } : null, path);
  }
});

Deno.test("staticFileFor refuses paths that leave the folder or name no known file type", () => {
  const refused = [
    "/../stack.ts",
    "/..%2fstack.ts",
    "/%2e%2e%2fmain.ts",
    "/a/b.js",
    "/demo%2fx.js",
    "/..",
    "/...js",
    "/x..js",
    "/.env",
    "/.hidden.js",
    "/%5cwin.js",
    "/stack.ts",
    "/demo",
    "/demo.",
    "/%E0%A4%A.js",
    "/a%00.js",
    "/q%3Fx.js",
    "/f%23x.js",
    "//etc/passwd.js",
  ];
  for (const path of refused) assert.equal(staticFileFor(path), null, path);
});
