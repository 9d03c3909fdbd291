// Build the app into the Python package (cds_service/smart_app/static/), served by the service under /app/.
// Writes BUILD-STAMP: the SHA-256 of the sources (stamp_inputs), which tests/test_smart_app.py recomputes so
// `make test` fails when a source changed without `make app`.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = join(here, "..", "cds_service", "smart_app", "static");

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

// the same list and digest as stamp() in tests/test_smart_app.py: "path\0bytes\0" per file, sorted by path
export function stamp() {
  const inputs = [...files(join(here, "src")), ...["build.mjs", "package.json", "package-lock.json"].map((f) => join(here, f))]
    .map((p) => relative(here, p).split("\\").join("/")).sort();
  const hash = createHash("sha256");
  for (const name of inputs) {
    hash.update(name + "\0");
    hash.update(readFileSync(join(here, name)));
    hash.update("\0");
  }
  return hash.digest("hex");
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: { launch: join(here, "src", "launch.js"), app: join(here, "src", "app.js") },
  bundle: true, minify: true, format: "iife", target: ["es2020"], outdir: out, legalComments: "linked",
  logLevel: "warning",
});
for (const name of ["index.html", "launch.html", "app.css"]) copyFileSync(join(here, "src", name), join(out, name));
writeFileSync(join(out, "BUILD-STAMP"), stamp() + "\n");
console.log("built", out);
