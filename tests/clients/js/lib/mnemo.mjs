// Starts mnemo binaries on port 0 over a fresh Postgres database (with API keys required:
// MNEMO_AUTH=api_key), makes keys on it, and takes everything down again.

import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, readFileSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(fileURLToPath(new URL("../../../..", import.meta.url)));

export const bin = resolve(repoRoot, process.env.MNEMO_BIN ?? "target/debug/mnemo");
const adminUrl = process.env.MNEMO_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

function psql(sql) {
  execFileSync("psql", [adminUrl, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], { stdio: ["ignore", "pipe", "pipe"] });
}

/** A database of its own, dropped by `drop()`. */
export function createDatabase() {
  const name = `mnemo_js_${process.pid}_${randomBytes(4).toString("hex")}`;
  psql(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/**
 * A new API key on the database at `databaseUrl` (`mnemo keys create`, which prints only the key):
 * `user`'s, or a service key when `user` is null.
 */
export function createKey(databaseUrl, { user = null, name = "js-test" } = {}) {
  const who = user == null ? ["--service"] : ["--user", user];
  const key = execFileSync(bin, ["keys", "create", ...who, "--name", name], {
    env: { ...process.env, DATABASE_URL: databaseUrl, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
  }).trim();
  if (!/^mnemo_\S+$/.test(key)) throw new Error(`mnemo keys create printed ${JSON.stringify(key)}`);
  return key;
}

/**
 * Starts `mnemo serve` with `env` on top of ours (and MNEMO_AUTH=api_key unless `env` says otherwise); resolves once it logs the port it listens on.
 * Its log goes to a file, shown by `log()` when a test fails.
 */
export async function startMnemo(databaseUrl, env = {}, label = "mnemo") {
  const logPath = join(tmpdir(), `${label}-${process.pid}-${randomBytes(3).toString("hex")}.log`);
  const fd = openSync(logPath, "w");
  const child = spawn(bin, ["serve"], {
    env: {
      ...process.env,
      RUST_LOG: "info",
      MNEMO_AUTH: "api_key",
      ...env,
      DATABASE_URL: databaseUrl,
      MNEMO_HOST: "127.0.0.1",
      MNEMO_PORT: "0",
    },
    stdio: ["ignore", "ignore", fd],
  });
  closeSync(fd);
  // whatever happens to this process, no mnemo outlives it
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  const log = () => readFileSync(logPath, "utf8");
  const exited = new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const m = /mnemo listening on 127\.0\.0\.1:(\d+)/.exec(log());
    if (m) {
      return {
        url: `http://127.0.0.1:${m[1]}`,
        log,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
          await exited;
          clearTimeout(timer);
          process.removeListener("exit", reap);
        },
      };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${label} did not start (${bin}):\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
