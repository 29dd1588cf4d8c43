// Zero-dependency lint of the dashboard's ES modules (src/talktuah/ui/static/js), run by
// .ci/run: each file parses as a module (`node --check`), and every name a file imports
// from a sibling is exported there, so a renamed export fails CI instead of the browser.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";

const root = process.argv[2] ?? "src/talktuah/ui/static/js";
const files = readdirSync(root).filter((name) => name.endsWith(".js")).map((name) => join(root, name));
const exported = (source) => {
  const names = new Set();
  for (const m of source.matchAll(/^export\s+(?:async\s+)?(?:function\*?|class|const|let|var)\s+([\w$]+)/gm)) names.add(m[1]);
  for (const m of source.matchAll(/^export\s*\{([^}]*)\}/gm)) {
    for (const part of m[1].split(",")) names.add(part.trim().split(/\s+as\s+/).pop());
  }
  return names;
};
let failures = 0;
for (const file of files) {
  try {
    execFileSync(process.execPath, ["--experimental-default-type=module", "--check", file], { stdio: "pipe" });
  } catch (error) {
    failures += 1;
    console.error(`${file}: does not parse as a module:\n${error.stderr}`);
    continue;
  }
  const source = readFileSync(file, "utf8");
  for (const m of source.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(\.[^"]+)"/g)) {
    const target = join(dirname(file), m[2]);
    if (!existsSync(target)) {
      failures += 1;
      console.error(`${file}: imports ${m[2]}, which does not exist`);
      continue;
    }
    const names = exported(readFileSync(target, "utf8"));
    for (const part of m[1].split(",").map((p) => p.trim()).filter(Boolean)) {
      const name = part.split(/\s+as\s+/)[0];
      if (!names.has(name)) {
        failures += 1;
        console.error(`${file}: imports ${name} from ${m[2]}, which does not export it`);
      }
    }
  }
}
if (failures) {
  console.error(`${failures} problem(s) in ${root}; fix them before the dashboard ships.`);
  process.exit(1);
}
console.log(`${files.length} dashboard modules parse and their imports resolve.`);
