// Builds the ISA-L addon (ovs_isal.c → build/Release/ovs_isal.node) with node-gyp. Run by the root
// package.json "install" script, so `npm install` and `npm ci` build it; also runnable by hand:
// `node native/isal/build.mjs`. It first checks that Debian's libisal-dev is there (headers and library),
// and if not fails with one sentence naming the package, instead of a page of compiler errors.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

function fail(message) {
  console.error(`openvstorage: ${message}`);
  process.exit(1);
}

// 1. Probe: compile and link a tiny program against ISA-L.
const probeDir = fs.mkdtempSync(path.join(os.tmpdir(), "ovs-isal-probe-"));
const probeSource = path.join(probeDir, "probe.c");
fs.writeFileSync(
  probeSource,
  "#include <isa-l/erasure_code.h>\n#include <isa-l/crc.h>\n" +
    "int main(void) { unsigned char a[2]; gf_gen_cauchy1_matrix(a, 2, 1); return (int)(crc32_iscsi(a, 1, 0) & 0); }\n",
);
const compiler = process.env.CC ?? "cc";
const probe = spawnSync(compiler, [probeSource, "-o", path.join(probeDir, "probe"), "-lisal"], { encoding: "utf8" });
fs.rmSync(probeDir, { recursive: true, force: true });
if (probe.error) {
  fail(`building the ISA-L addon needs a C compiler (${compiler}: ${probe.error.message}); install Debian's build-essential.`);
}
if (probe.status !== 0) {
  fail("building the ISA-L addon needs Debian's libisal-dev (ISA-L headers and library): run `apt-get install -y libisal-dev`, then `npm install` again.");
}

// 2. node-gyp: npm's own copy (npm sets npm_config_node_gyp for scripts), else the one bundled with npm.
const bundled = path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
const nodeGyp = process.env.npm_config_node_gyp ?? bundled;
if (!fs.existsSync(nodeGyp)) fail(`node-gyp not found (looked for ${nodeGyp}); run this through npm.`);
const args = [nodeGyp, "rebuild"];
// Build against the installed Node headers rather than downloading them (no network here).
const headers = path.join(path.dirname(process.execPath), "..", "include", "node", "common.gypi");
if (process.env.npm_config_nodedir === undefined && fs.existsSync(headers)) {
  args.push(`--nodedir=${path.resolve(path.dirname(process.execPath), "..")}`);
}
const build = spawnSync(process.execPath, args, { cwd: here, stdio: "inherit" });
if (build.status !== 0) fail("node-gyp failed to build the ISA-L addon in native/isal (see the output above).");
