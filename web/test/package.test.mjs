// The npm package: package.json, the import map of the no-build pages, the vendored msgpack
// against the dependency, and the packed tarball as a user gets it: imported by Node, bundled
// by esbuild, type-checked by tsc. No server needed.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { ROOT, WEB, within } from "../test-support/echo.mjs";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(path.join(WEB, "package.json"), "utf8"));
const VENDOR = path.join(WEB, "vendor", "msgpack");
const INSTALLED = path.join(WEB, "node_modules", "@msgpack", "msgpack");

test("package.json: ESM, exports and types, files, engines, the msgpack dependency", () => {
  assert.equal(pkg.name, "repod");
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.exports, {
    ".": { types: "./repod.d.ts", default: "./repod.js" },
    "./package.json": "./package.json",
  });
  assert.equal(pkg.types, "./repod.d.ts");
  assert.deepEqual([...pkg.files].sort(), ["LICENSE-APACHE", "LICENSE-MIT", "README.md", "repod.d.ts", "repod.js"]);
  for (const f of pkg.files) assert.ok(existsSync(path.join(WEB, f)), `${f} exists`);
  assert.match(pkg.engines.node, /^>=\d+/);
  assert.equal(pkg.sideEffects, false);
  // The same version line as the vendored copy the pages use.
  const vendored = readFileSync(path.join(VENDOR, "VERSION"), "utf8").trim();
  assert.equal(pkg.dependencies["@msgpack/msgpack"], `^${vendored}`);
  assert.deepEqual(Object.keys(pkg.dependencies), ["@msgpack/msgpack"]);
  assert.ok(pkg.devDependencies.ws, "ws is a devDependency");
});

test("license: the crate's, with both texts shipped", () => {
  const cargo = readFileSync(path.join(ROOT, "Cargo.toml"), "utf8");
  const crate = /^license\s*=\s*"([^"]+)"/m.exec(cargo)?.[1];
  assert.equal(pkg.license, crate);
  assert.equal(pkg.license, "MIT OR Apache-2.0");
  // Copies of the repository's files, kept identical.
  for (const f of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    const mine = readFileSync(path.join(WEB, f), "utf8");
    if (existsSync(path.join(ROOT, f))) {
      assert.equal(mine, readFileSync(path.join(ROOT, f), "utf8"), `web/${f} is a copy of ../${f}`);
    }
  }
  assert.match(readFileSync(path.join(WEB, "LICENSE-MIT"), "utf8"), /^MIT License/);
  assert.match(readFileSync(path.join(WEB, "LICENSE-APACHE"), "utf8"), /Apache License\s+Version 2\.0/);
});

test("Node resolves the package by its name (exports) to repod.js, and msgpack from npm", async () => {
  const byName = await import("repod");
  const byPath = await import("../repod.js");
  assert.equal(byName.Client, byPath.Client, "the same module");
  assert.equal(typeof byName.Client, "function");
  assert.equal(byName.ConnectionListener, byName.Client);
  assert.equal(import.meta.resolve("repod"), pathToFileURL(path.join(WEB, "repod.js")).href);
  // repod.js imports msgpack by its bare name, not the vendored path.
  const source = readFileSync(path.join(WEB, "repod.js"), "utf8");
  assert.match(source, /^import \{ Decoder, Encoder \} from "@msgpack\/msgpack";$/m);
  assert.doesNotMatch(source, /^import .*vendor/m);
});

/** Every file under `dir`, relative, sorted. */
function walk(dir, under = "") {
  return readdirSync(path.join(dir, under), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(under, e.name);
    return e.isDirectory() ? walk(dir, rel) : [rel];
  }).sort();
}

test("the vendored msgpack (for the pages) is the installed dependency's dist.esm, byte for byte", () => {
  const installed = JSON.parse(readFileSync(path.join(INSTALLED, "package.json"), "utf8")).version;
  const vendored = readFileSync(path.join(VENDOR, "VERSION"), "utf8").trim();
  assert.equal(installed, vendored, "package-lock.json and vendor/msgpack/VERSION name the same version");
  const esm = path.join(INSTALLED, "dist.esm");
  const mine = walk(VENDOR).filter((f) => f.endsWith(".mjs"));
  const theirs = walk(esm).filter((f) => f.endsWith(".mjs"));
  assert.deepEqual(mine, theirs);
  for (const f of mine) {
    assert.ok(readFileSync(path.join(VENDOR, f)).equals(readFileSync(path.join(esm, f))), `${f} differs`);
  }
});

test("every page that loads repod.js maps @msgpack/msgpack to the vendored copy, before any module script", () => {
  const pages = readdirSync(WEB).filter((f) => f.endsWith(".html"));
  assert.ok(pages.length >= 3, `pages: ${pages}`);
  for (const page of pages) {
    const html = readFileSync(path.join(WEB, page), "utf8");
    if (!/from "\.\/repod\.js"/.test(html)) continue;
    const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
    assert.ok(map, `${page} has an import map`);
    const target = JSON.parse(map[1]).imports["@msgpack/msgpack"];
    assert.equal(target, "./vendor/msgpack/index.mjs", page);
    assert.ok(existsSync(path.join(WEB, target)), `${page}: ${target} exists`);
    const firstModule = html.indexOf('<script type="module"');
    assert.ok(firstModule > map.index, `${page}: the import map comes before the first module script`);
    assert.equal(html.match(/<script type="importmap">/g).length, 1, `${page}: one import map`);
  }
});

test("the packed tarball, installed: Node imports it, esbuild bundles it, tsc checks a user's code against it", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "repod-web-consumer-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { stdout } = await within(120_000, run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: WEB }), "npm pack");
  const [{ filename, files }] = JSON.parse(stdout);
  assert.deepEqual(files.map((f) => f.path).sort(),
    ["LICENSE-APACHE", "LICENSE-MIT", "README.md", "package.json", "repod.d.ts", "repod.js"]);

  // An installed project, as npm would lay it out; the dependencies linked from web/.
  const modules = path.join(dir, "node_modules");
  mkdirSync(path.join(modules, "repod"), { recursive: true });
  mkdirSync(path.join(modules, "@types"), { recursive: true });
  await within(60_000, run("tar", ["-xzf", path.join(dir, filename), "-C", path.join(modules, "repod"), "--strip-components=1"]), "tar");
  for (const dep of ["@msgpack", "ws", "@types/ws", "@types/node", "undici-types"]) {
    symlinkSync(path.join(WEB, "node_modules", dep), path.join(modules, dep));
  }
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "user", private: true, type: "module" }));

  await t.test("Node: import from \"repod\" and connect with ws (a refused connect is an error event)", async () => {
    writeFileSync(path.join(dir, "main.js"), `
      import { Client } from "repod";
      import WebSocket from "ws";
      const c = new Client({ WebSocket });
      c.on("error", (d) => { console.log(JSON.stringify({ error: d.error, state: c.state })); });
      c.connect("ws://127.0.0.1:1/");
    `);
    const out = await within(30_000, run(process.execPath, ["main.js"], { cwd: dir }), "node main.js");
    const got = JSON.parse(out.stdout);
    assert.match(got.error, /^cannot connect to ws:\/\/127\.0\.0\.1:1\/ \(1006\)$/);
    assert.equal(got.state, "closed");
  });

  await t.test("esbuild: bundles for the browser with msgpack's ES module build inlined", async () => {
    const esbuild = await import("esbuild");
    writeFileSync(path.join(dir, "entry.js"), `import { Client } from "repod";\nexport const c = new Client();\n`);
    const result = await esbuild.build({
      entryPoints: [path.join(dir, "entry.js")],
      absWorkingDir: dir,
      bundle: true,
      format: "esm",
      platform: "browser",
      write: false,
      metafile: true,
      logLevel: "silent",
    });
    assert.deepEqual(result.errors, []);
    const inputs = Object.keys(result.metafile.inputs);
    assert.ok(inputs.some((f) => /node_modules\/repod\/repod\.js$/.test(f)), inputs.join("\n"));
    assert.ok(inputs.some((f) => /@msgpack\/msgpack\/dist\.esm\/Encoder\.mjs$/.test(f)), inputs.join("\n"));
    const code = result.outputFiles[0].text;
    assert.doesNotMatch(code, /from\s*["']@msgpack|require\(/, "nothing left to resolve");
    // And the bundle runs.
    const out = path.join(dir, "bundle.mjs");
    writeFileSync(out, code);
    const { c } = await import(pathToFileURL(out).href);
    assert.equal(c.state, "idle");
  });

  for (const [resolution, module] of [["bundler", "esnext"], ["nodenext", "nodenext"]]) {
    await t.test(`tsc: a user's TypeScript compiles (moduleResolution ${resolution})`, async () => {
      copyFileSync(path.join(WEB, "test-support", "consumer", "check.ts"), path.join(dir, "check.ts"));
      const config = path.join(dir, `tsconfig.${resolution}.json`);
      writeFileSync(config, JSON.stringify({
        compilerOptions: {
          target: "es2022",
          module,
          moduleResolution: resolution,
          lib: ["es2022", "dom"],
          types: ["node"],
          strict: true,
          noEmit: true,
          skipLibCheck: false,
        },
        files: ["check.ts"],
      }));
      const tsc = path.join(WEB, "node_modules", ".bin", "tsc");
      try {
        await within(120_000, run(tsc, ["-p", config], { cwd: dir }), "tsc");
      } catch (e) {
        assert.fail(`tsc failed:\n${e.stdout ?? ""}${e.stderr ?? ""}${e.message}`);
      }
    });
  }
});
