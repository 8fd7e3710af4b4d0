import assert from "node:assert/strict";
import { CLIENT_LIBRARY_PATH, staticFileFor } from "../../../dev/demo_server.ts";

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

Deno.test("every module the demo page loads is one the demo server serves, and each is loaded", async () => {
  const folder = new URL("../../../dev/demo/", import.meta.url);
  const library = new URL("../../../client/relay_client.js", import.meta.url);
  const html = await Deno.readTextFile(new URL("index.html", folder));
  const entries = [...html.matchAll(/<script type="module" src="([^"]+)"/g)].map((m) => m[1]!);
  assert.deepEqual(entries, ["/demo.js"]);
  // Walks the page's imports as the browser resolves them (and the worklet it adds).
  const seen = new Set<string>();
  const loaded: string[] = [];
  const queue = [...entries];
  while (queue.length > 0) {
    const path = queue.shift()!;
    if (seen.has(path) || path === CLIENT_LIBRARY_PATH) continue;
    seen.add(path);
    const found = staticFileFor(path);
    assert.ok(found, `${path}: the demo server serves plain names in dev/demo/ only`);
    loaded.push(found.file);
    const onDisk = new URL(found.file, folder);
    const source = await Deno.readTextFile(onDisk);
    const specifiers = [
      ...[...source.matchAll(/^import\s[^;]*?\bfrom\s+"([^"]+)";$/gms)].map((m) => m[1]!),
      ...[...source.matchAll(/addModule\("([^"]+)"\)/g)].map((m) => m[1]!),
    ];
    for (const specifier of specifiers) {
      const inBrowser = new URL(specifier, `http://127.0.0.1${path}`).pathname;
      // Deno's tools resolve the same import on disk: it must name the same file.
      if (specifier.startsWith(".")) {
        const target = new URL(specifier, onDisk).href;
        const expected = inBrowser === CLIENT_LIBRARY_PATH
          ? library.href
          : new URL(staticFileFor(inBrowser)?.file ?? "?", folder).href;
        assert.equal(target, expected, `${found.file} imports ${specifier}`);
      }
      queue.push(inBrowser);
    }
  }
  const scripts = [...Deno.readDirSync(folder)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".js"))
    .map((entry) => entry.name);
  assert.deepEqual(loaded.filter((file) => file.endsWith(".js")).sort(), scripts.sort());
});
