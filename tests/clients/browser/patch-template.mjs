// Prepares create-agent-chat-app's Vite template (agent-chat-ui) to be installed and built
// offline-reproducibly: node patch-template.mjs <extracted template dir>
// Edits only the template's package.json; its source is built as published.
import fs from "node:fs";
import path from "node:path";

const dir = process.argv[2];
const pkgPath = path.join(dir, "package.json");
const pkg = JSON.parse(fs.readFileSync(pkgPath, "utf8"));

// The local LangGraph dev server and turbo (`"latest"`, unpinnable) serve the template's own
// monorepo, not the web app: the app imports neither.
for (const name of ["@langchain/langgraph-api", "@langchain/langgraph-cli"]) {
  delete pkg.dependencies[name];
}
delete pkg.devDependencies.turbo;
pkg.scripts.build = "vite build";
// What `create-agent-chat-app` itself adds for npm: one @langchain/core everywhere.
pkg.overrides = { ...pkg.overrides, "@langchain/core": "^0.3.42" };

fs.writeFileSync(pkgPath, JSON.stringify(pkg, null, 2) + "\n");
