// Serves the built agent-chat-ui and drives it in headless Chromium against a running mnemo that
// requires API keys and allows the app's origin (MNEMO_AUTH=api_key, MNEMO_CORS_ORIGINS).
//
//   MNEMO_PLAYWRIGHT_MODULES=<node_modules with playwright-core> \
//   MNEMO_ALICE_KEY=<alice's API key> MNEMO_BOB_KEY=<bob's API key> \
//     node drive.mjs <dist dir> <mnemo base url> <output dir> [app port]
//
// The app is built with nothing baked in, so it opens on its setup form: the test types mnemo's
// URL, the graph and alice's key there, as a user does. The browser calls mnemo directly,
// cross-origin, exactly as a deployed agent-chat-ui does (CORS preflights included). Then bob, in
// a fresh browser profile with his own key, must find none of alice's threads.
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

// playwright-core is installed in the runner's cache, not next to this file
const modules = process.env.MNEMO_PLAYWRIGHT_MODULES;
if (!modules) {
  console.error("MNEMO_PLAYWRIGHT_MODULES must name the node_modules holding playwright-core");
  process.exit(2);
}
const { chromium } = createRequire(path.join(modules, "noop.js"))("playwright-core");

const TIMEOUT = 30_000;

const [distDir, mnemoUrl, outDir, appPort = "0"] = process.argv.slice(2);
const ALICE_KEY = process.env.MNEMO_ALICE_KEY;
const BOB_KEY = process.env.MNEMO_BOB_KEY;
if (!distDir || !mnemoUrl || !outDir || !ALICE_KEY || !BOB_KEY) {
  console.error(
    "usage: MNEMO_ALICE_KEY=… MNEMO_BOB_KEY=… node drive.mjs <dist dir> <mnemo base url> <output dir> [app port]",
  );
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const logPath = path.join(outDir, "browser.log");
const log = fs.createWriteStream(logPath);
const note = (line) => log.write(`${new Date().toISOString()} ${line}\n`);

// ---- the app's static server ----
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".json": "application/json",
};

function serveApp() {
  const root = path.resolve(distDir);
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, "http://x");
    let file = path.join(root, decodeURIComponent(pathname));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      file = path.join(root, "index.html"); // a single-page app: every other route is index.html
    }
    const type = TYPES[path.extname(file)] ?? "application/octet-stream";
    res.writeHead(200, { "content-type": type, "cache-control": "no-store" });
    res.end(fs.readFileSync(file));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(Number(appPort), "127.0.0.1", () => resolve(server));
  });
}

// ---- what the browser does, logged ----
const problems = []; // console errors, page errors, failed requests, 4xx/5xx answers
const expected = []; // the same, where a step expects them (bob opening alice's thread)
const streams = []; // every run stream the app opened: {url, status, contentType, body, request}
let expecting = null; // while set, (text) => whether a problem is the one the step expects

function problem(line) {
  if (expecting?.(line)) expected.push(line);
  else problems.push(line);
}

// `key`: the API key every request of this page to mnemo must carry
async function watch(page, key) {
  page.on("console", (m) => {
    note(`console.${m.type()}: ${m.text()}`);
    if (m.type() === "error") problem(`console error: ${m.text()} (${m.location()?.url ?? ""})`);
  });
  page.on("pageerror", (e) => {
    note(`pageerror: ${e.stack ?? e}`);
    problem(`page error: ${e.message}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(`${mnemoUrl}/`)) return;
    const sent = r.headers()["x-api-key"];
    if (sent !== key) {
      const what = sent == null ? "no x-api-key" : "another key";
      note(`${r.method()} ${r.url()} carried ${what}`);
      problems.push(`${r.method()} ${r.url()} carried ${what}, not the key entered in the form`);
    }
  });
  page.on("response", (r) => {
    const line = `${r.status()} ${r.request().method()} ${r.url()}`;
    note(line);
    if (r.status() >= 400) problem(`response ${line}`);
  });
  page.on("requestfailed", (r) => {
    const line = `request failed: ${r.method()} ${r.url()} (${r.failure()?.errorText})`;
    // Chromium reports a `Cache-Control: no-store` fetch that the page read to its end through
    // a stream reader as canceled (ERR_ABORTED), with or without mnemo (the LangGraph server sends
    // the same header). Such a stream is checked below from its captured body instead.
    const stream = streams.find((s) => s.url === r.url());
    if (r.failure()?.errorText === "net::ERR_ABORTED" && stream?.status === 200) {
      note(`${line}: a fully read no-store stream, checked from its body`);
      return;
    }
    // agent-chat-ui probes `GET /info` whenever its stream provider mounts; a navigation while a
    // probe is in flight makes the browser abort it: the page left, not mnemo
    if (r.failure()?.errorText === "net::ERR_ABORTED" && r.method() === "GET" && new URL(r.url()).pathname === "/info") {
      note(`${line}: the page's own probe, aborted by the page`);
      return;
    }
    note(line);
    problem(line);
  });

  // Run streams' bodies as the page received them, from the DevTools protocol (reading them
  // through Playwright would consume them): streaming of a run stream's content is switched on as
  // its request leaves; a run so quick that its stream has ended by then is read whole instead.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const byId = new Map();
  cdp.on("Network.requestWillBeSent", async (e) => {
    const { pathname } = new URL(e.request.url);
    if (e.type !== "Fetch" || e.request.method !== "POST" || !/\/runs\/stream$/.test(pathname)) return;
    let settle;
    const entry = { url: e.request.url, request: e.request.postData, status: 0, contentType: "", body: "" };
    entry.done = new Promise((r) => (settle = r));
    entry.ended = new Promise((r) => (entry.end = r));
    streams.push(entry);
    byId.set(e.requestId, entry);
    try {
      const { bufferedData } = await cdp.send("Network.streamResourceContent", { requestId: e.requestId });
      entry.body = Buffer.from(bufferedData, "base64").toString("utf8") + entry.body;
      await entry.ended;
      note(`run stream ${e.request.url}: body captured as it streamed`);
    } catch (err) {
      const loaded = await entry.ended;
      try {
        if (!loaded) throw new Error("it did not finish loading");
        const { body, base64Encoded } = await cdp.send("Network.getResponseBody", { requestId: e.requestId });
        entry.body = base64Encoded ? Buffer.from(body, "base64").toString("utf8") : body;
        note(`run stream ${e.request.url}: ended before streaming capture began, body read whole`);
      } catch (err2) {
        entry.body = `<body not captured: ${err.message}; ${err2.message}>`;
      }
    }
    settle();
  });
  cdp.on("Network.responseReceived", (e) => {
    const entry = byId.get(e.requestId);
    if (!entry) return;
    entry.status = e.response.status;
    entry.contentType = e.response.headers["content-type"] ?? e.response.headers["Content-Type"] ?? "";
  });
  cdp.on("Network.dataReceived", (e) => {
    const entry = byId.get(e.requestId);
    if (entry && e.data) entry.body += Buffer.from(e.data, "base64").toString("utf8");
  });
  cdp.on("Network.loadingFinished", (e) => byId.get(e.requestId)?.end(true));
  cdp.on("Network.loadingFailed", (e) => byId.get(e.requestId)?.end(false));
}

// SSE text -> [{event, data}]
function parseSse(text) {
  return text
    .split(/\r?\n\r?\n/)
    .filter((block) => block.trim())
    .map((block) => {
      const lines = block.split(/\r?\n/);
      const event = lines.find((l) => l.startsWith("event:"))?.slice(6).trim() ?? "message";
      const data = lines
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      let parsed = data;
      try {
        parsed = JSON.parse(data);
      } catch {
        // left as text
      }
      return { event, data: parsed };
    });
}

// ---- steps ----
let step = 0;
async function shot(page, name) {
  await page.waitForTimeout(400); // let hover-revealed controls finish fading in
  step += 1;
  const file = path.join(outDir, `${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`  screenshot ${file}`);
}

const MESSAGE_BLOCKS = "div.ml-auto.group, div.mr-auto.group"; // HumanMessage, AssistantMessage

// The rendered conversation: one {who, text} per human / assistant / tool block, in page order.
function rendered(page) {
  return page.evaluate((sel) => {
    return [...document.querySelectorAll(sel)].map((el) => ({
      who: el.classList.contains("ml-auto") ? "human" : "ai",
      text: el.innerText.trim(),
    }));
  }, MESSAGE_BLOCKS);
}

// Waits until the page shows exactly `expected` blocks ({who, has: [substrings]}), in order.
async function waitForConversation(page, expected, what) {
  try {
    await page.waitForFunction(
      ([sel, exp]) => {
        const got = [...document.querySelectorAll(sel)].map((el) => ({
          who: el.classList.contains("ml-auto") ? "human" : "ai",
          text: el.innerText,
        }));
        return (
          got.length === exp.length &&
          exp.every((e, i) => got[i].who === e.who && e.has.every((s) => got[i].text.includes(s)))
        );
      },
      [MESSAGE_BLOCKS, expected],
      { timeout: TIMEOUT },
    );
  } catch {
    await shot(page, `${what.replaceAll(" ", "-")}-FAILED`).catch(() => {});
    throw new Error(
      `${what}: expected ${JSON.stringify(expected)}\n    the page shows ${JSON.stringify(await rendered(page))}`,
    );
  }
}

async function send(page, text) {
  const box = page.locator("form textarea");
  await box.fill(text);
  await box.press("Enter");
}

// The run stream of one turn: 200 SSE; metadata, then `values` (the UI asks for them) and
// `messages` (the SDK adds messages-tuple mode because the UI reads stream.messages); the last state
// ends with the human message and an answer containing `answer`, and the answer's `messages`
// chunks add up to exactly that answer: it was streamed token by token.
async function checkStream(stream, threadId, human, answer) {
  await Promise.race([stream.done, new Promise((r) => setTimeout(r, 5000))]);
  const where = `the "${human}" stream (${stream.url})`;
  if (!stream.url.endsWith(`/threads/${threadId}/runs/stream`)) throw new Error(`${where} is not on thread ${threadId}`);
  if (stream.status !== 200 || !stream.contentType.startsWith("text/event-stream")) {
    throw new Error(`${where} answered ${stream.status} ${stream.contentType}`);
  }
  const events = parseSse(stream.body);
  const names = events.map((e) => e.event);
  const values = events.filter((e) => e.event === "values");
  if (names[0] !== "metadata" || !values.length || !names.slice(1).every((n) => n === "values" || n === "messages")) {
    throw new Error(`${where} carried events ${JSON.stringify(names)}:\n${stream.body}`);
  }
  const last = values.at(-1).data?.messages ?? [];
  const humans = last.filter((m) => m.type === "human").map((m) => m.content);
  const final = last.at(-1);
  if (humans.at(-1) !== human || final?.type !== "ai" || !String(final.content).includes(answer)) {
    throw new Error(`${where}: its last values event ends with ${JSON.stringify(last.slice(-2))}`);
  }
  const chunks = events.filter((e) => e.event === "messages" && e.data?.[0]?.id === final.id).map((e) => e.data[0].content);
  if (chunks.length < 2 || chunks.join("") !== final.content) {
    throw new Error(`${where}: the answer's message chunks ${JSON.stringify(chunks)} do not add up to ${JSON.stringify(final.content)}`);
  }
  return `${values.length} values events, the answer in ${chunks.length} chunks`;
}

const checks = [];
function pass(what) {
  checks.push(what);
  console.log(`  ok  ${what}`);
}

const TURN_1 = [
  { who: "human", has: ["add task buy milk"] },
  { who: "ai", has: ["create_task", "buy milk"] }, // the model's tool call
  { who: "ai", has: ["Tool Result: create_task", 'Added task "buy milk".'] },
  { who: "ai", has: ['Added task "buy milk".'] },
];
const TURN_2 = [
  { who: "human", has: ["get tasks"] },
  { who: "ai", has: ["list_tasks"] },
  { who: "ai", has: ["Tool Result: list_tasks", "buy milk (todo)"] },
  { who: "ai", has: ["Your tasks:", "buy milk (todo)"] },
];

// A browser with a profile of its own (its own localStorage, where the app keeps the API key).
const profiles = [];
async function browser() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mnemo-chromium-"));
  profiles.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 1300 },
  });
  note(`chromium ${context.browser()?.version() ?? ""}, profile ${dir}`);
  return context;
}

// The POST /threads/search the sidebar makes (agent-chat-ui's getThreads), answered.
function sidebarSearch(page) {
  return page.waitForResponse(
    (r) => r.request().method() === "POST" && r.url() === `${mnemoUrl}/threads/search`,
    { timeout: TIMEOUT },
  );
}

// The setup form the app opens on (nothing is baked into the build): mnemo's URL, the graph, and
// the user's API key, which the app keeps in localStorage and sends as x-api-key from then on.
async function setUp(page, who, key, graph = "agent") {
  await page.goto(appUrl);
  await page.locator("#apiUrl").waitFor({ timeout: TIMEOUT });
  const prefilled = await page.locator("#apiKey").inputValue();
  if (prefilled) throw new Error(`${who}'s setup form already holds an API key`);
  await page.locator("#apiUrl").fill(mnemoUrl);
  await page.locator("#assistantId").fill(graph);
  await page.locator("#apiKey").fill(key);
  await shot(page, `${who}-setup-form`);
  const searched = sidebarSearch(page);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.locator("form textarea").waitFor({ timeout: TIMEOUT });
  const stored = await page.evaluate(() => window.localStorage.getItem("lg:chat:apiKey"));
  if (stored !== key) throw new Error(`the app did not keep ${who}'s key from its form`);
  return searched;
}

// Fetches mnemo with a key (or none): the status and the JSON answer.
async function api(pathname, key, init = {}) {
  const headers = { ...(init.headers ?? {}), ...(key ? { "x-api-key": key } : {}) };
  const r = await fetch(`${mnemoUrl}${pathname}`, { ...init, headers });
  const text = await r.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {
    // left as text
  }
  return { status: r.status, body, headers: r.headers };
}

// A CORS preflight as a browser on `origin` sends it before a keyed call.
async function preflight(origin) {
  const r = await fetch(`${mnemoUrl}/threads/search`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,x-api-key",
    },
  });
  return {
    status: r.status,
    origin: r.headers.get("access-control-allow-origin"),
    headers: (r.headers.get("access-control-allow-headers") ?? "").toLowerCase(),
  };
}

// ---- the run ----
const server = await serveApp();
const appUrl = `http://127.0.0.1:${server.address().port}`;
console.log(`  app served at ${appUrl}, API ${mnemoUrl}`);
let context;
let exitCode = 0;
let failure = "";
try {
  // mnemo lets the app's origin send the key, and no other origin
  const ours = await preflight(appUrl);
  if (ours.origin !== appUrl || !ours.headers.split(/,\s*/).includes("x-api-key")) {
    throw new Error(`the preflight from ${appUrl} was answered ${JSON.stringify(ours)}`);
  }
  const foreign = await preflight("http://evil.example");
  if (foreign.origin) throw new Error(`a foreign origin's preflight was allowed: ${JSON.stringify(foreign)}`);
  const anonymous = await api("/threads/search", null, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  if (anonymous.status !== 401 || !anonymous.headers.get("www-authenticate")) {
    throw new Error(`a search without a key answered ${anonymous.status} ${JSON.stringify(anonymous.body)}`);
  }
  pass(`mnemo requires a key (401 without one) and allows CORS from ${appUrl} (x-api-key included), not from other origins`);

  context = await browser();
  const page = context.pages()[0] ?? (await context.newPage());
  await watch(page, ALICE_KEY);
  const first = await (await setUp(page, "alice", ALICE_KEY)).json();
  if (JSON.stringify(first) !== "[]") throw new Error(`alice's first sidebar search answered ${JSON.stringify(first)}`);
  await shot(page, "empty-chat");
  pass("alice enters mnemo's URL, the graph and her API key in the app's setup form; the chat opens");

  await send(page, "add task buy milk");
  await waitForConversation(page, TURN_1, "first turn");
  await page.waitForURL(/[?&]threadId=/, { timeout: TIMEOUT });
  await shot(page, "task-added");
  pass('"add task buy milk": the tool call, its result and the answer Added task "buy milk". are shown');

  await send(page, "get tasks");
  await waitForConversation(page, [...TURN_1, ...TURN_2], "second turn");
  await shot(page, "tasks-listed");
  pass('"get tasks": the answer lists "buy milk (todo)"');

  const threadId = new URL(page.url()).searchParams.get("threadId") ?? "";
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(threadId)) {
    throw new Error(`the URL's threadId is not a UUID: ${page.url()}`);
  }
  // the answers arrived over the run streams, not only from the history fetched afterwards
  if (streams.length !== 2) throw new Error(`expected 2 run streams, saw ${JSON.stringify(streams.map((s) => s.url))}`);
  const n1 = await checkStream(streams[0], threadId, "add task buy milk", 'Added task "buy milk".');
  const n2 = await checkStream(streams[1], threadId, "get tasks", "buy milk (todo)");
  pass(`both answers were streamed over SSE on thread ${threadId} from the URL (${n1}; ${n2})`);

  const { status: got, body: thread } = await api(`/threads/${threadId}`, ALICE_KEY);
  if (got !== 200) throw new Error(`GET /threads/${threadId} with alice's key answered ${got}`);
  const kept = (thread.values?.messages ?? []).filter((m) => m.type === "human").map((m) => m.content);
  if (JSON.stringify(kept) !== JSON.stringify(["add task buy milk", "get tasks"])) {
    throw new Error(`mnemo's thread ${threadId} holds human messages ${JSON.stringify(kept)}`);
  }
  pass("mnemo's thread holds both human messages");

  // a new page on the thread's URL: the whole conversation comes back from mnemo's history
  const threadUrl = page.url(); // ?apiUrl=…&assistantId=agent&threadId=…
  await page.close();
  const again = await context.newPage();
  await watch(again, ALICE_KEY);
  await again.goto(threadUrl);
  await waitForConversation(again, [...TURN_1, ...TURN_2], "history after reload");
  await shot(again, "history-reloaded");
  pass(`opening ?threadId=${threadId} afresh renders the whole conversation again`);

  // The thread list in the sidebar (threads.search by graph_id, with the key from localStorage).
  await again.close();
  const listed = await context.newPage();
  await watch(listed, ALICE_KEY);
  const q = new URLSearchParams({ apiUrl: mnemoUrl, assistantId: "agent", chatHistoryOpen: "true" });
  await listed.goto(`${appUrl}/?${q}`);
  const entry = listed.locator("button p.truncate", { hasText: "add task buy milk" });
  try {
    await entry.first().waitFor({ timeout: TIMEOUT });
  } catch {
    await shot(listed, "thread-list-FAILED").catch(() => {});
    const shown = await listed.locator("button p.truncate").allInnerTexts();
    throw new Error(`the sidebar does not list the thread; it shows ${JSON.stringify(shown)}`);
  }
  if ((await entry.count()) !== 1) throw new Error(`the sidebar lists the thread ${await entry.count()} times`);
  await shot(listed, "thread-list");
  await entry.click();
  await waitForConversation(listed, [...TURN_1, ...TURN_2], "thread picked from the sidebar");
  const picked = new URL(listed.url()).searchParams.get("threadId");
  if (picked !== threadId) throw new Error(`the sidebar opened thread ${picked}, not ${threadId}`);
  await shot(listed, "thread-picked");
  pass('the sidebar lists the thread by its first message, and picking it renders the conversation');

  // Editing a human message forks the thread from the checkpoint before it (a run with
  // `checkpoint`), and the branch switcher, built from the thread's history, goes between the two.
  const second = listed.locator("div.ml-auto.group").nth(1);
  await second.hover();
  await second.getByRole("button", { name: "Edit" }).click();
  await second.locator("textarea").fill("add task buy bread");
  await second.getByRole("button", { name: "Submit" }).click();
  const TURN_2B = [
    { who: "human", has: ["add task buy bread", "2 / 2"] },
    { who: "ai", has: ["create_task", "buy bread"] },
    { who: "ai", has: ["Tool Result: create_task", 'Added task "buy bread".'] },
    { who: "ai", has: ['Added task "buy bread".'] },
  ];
  await waitForConversation(listed, [...TURN_1, ...TURN_2B], "edited second message");
  await listed.locator("div.ml-auto.group").nth(1).hover(); // shows the branch switcher
  await shot(listed, "message-edited");
  if (streams.length !== 3) throw new Error(`expected a third run stream, saw ${streams.length}`);
  await checkStream(streams[2], threadId, "add task buy bread", 'Added task "buy bread".');
  const fork = JSON.parse(streams[2].request ?? "{}");
  if (!fork.checkpoint?.checkpoint_id) throw new Error(`the edit's run did not fork from a checkpoint: ${streams[2].request}`);
  pass('editing "get tasks" into "add task buy bread" forks the thread; the new branch is 2 / 2');

  await listed.locator("div.ml-auto.group").nth(1).getByRole("button").first().click(); // ChevronLeft
  await waitForConversation(
    listed,
    [...TURN_1, { ...TURN_2[0], has: ["get tasks", "1 / 2"] }, ...TURN_2.slice(1)],
    "first branch again",
  );
  await listed.locator("div.ml-auto.group").nth(1).hover(); // shows the branch switcher
  await shot(listed, "first-branch");
  pass('the branch switcher goes back to 1 / 2: "get tasks" and its answer');

  // Regenerating the last answer re-runs the model from the checkpoint before it (a run with a
  // checkpoint and no input): a second version of the answer, 2 / 2, on the same branch.
  const answer = listed.locator("div.mr-auto.group").last();
  await answer.hover();
  await answer.getByRole("button", { name: "Refresh" }).click();
  await waitForConversation(
    listed,
    [...TURN_1, { ...TURN_2[0], has: ["get tasks", "1 / 2"] }, ...TURN_2.slice(1, 3), { ...TURN_2[3], has: [...TURN_2[3].has, "2 / 2"] }],
    "regenerated answer",
  );
  if (streams.length !== 4) throw new Error(`expected a fourth run stream, saw ${streams.length}`);
  await checkStream(streams[3], threadId, "get tasks", "buy milk (todo)");
  const regen = JSON.parse(streams[3].request ?? "{}");
  if (regen.input != null || !regen.checkpoint?.checkpoint_id) {
    throw new Error(`the regenerating run was not a checkpoint without input: ${streams[3].request}`);
  }
  await listed.locator("div.mr-auto.group").last().hover();
  await shot(listed, "answer-regenerated");
  pass('regenerating the "get tasks" answer streams it again as version 2 / 2');

  if (problems.length) throw new Error(`the browser saw errors:\n    ${problems.join("\n    ")}`);
  pass("no console errors, page errors, failed requests or 4xx/5xx answers; every call to mnemo carried alice's key");
  await context.close();

  // Bob, in a browser of his own, with his own key: his sidebar is empty, alice's thread is not there
  context = await browser();
  const bob = context.pages()[0] ?? (await context.newPage());
  await watch(bob, BOB_KEY);
  const bobFirst = await setUp(bob, "bob", BOB_KEY);
  const bobSearch = await bobFirst.json();
  if (bobFirst.status() !== 200 || JSON.stringify(bobSearch) !== "[]") {
    throw new Error(`bob's sidebar search answered ${bobFirst.status()} ${JSON.stringify(bobSearch)}`);
  }
  const searched = sidebarSearch(bob);
  await bob.goto(`${appUrl}/?${q}`);
  const opened = await searched;
  const openedBody = await opened.json();
  if (opened.status() !== 200 || JSON.stringify(openedBody) !== "[]") {
    throw new Error(`bob's sidebar search answered ${opened.status()} ${JSON.stringify(openedBody)}`);
  }
  await bob.getByRole("heading", { name: "Thread History" }).first().waitFor({ timeout: TIMEOUT });
  await bob.waitForTimeout(500); // the list renders what the search answered
  const bobList = await bob.locator("button p.truncate").allInnerTexts();
  if (bobList.length) throw new Error(`bob's sidebar lists ${JSON.stringify(bobList)}`);
  await shot(bob, "bob-thread-list-empty");
  pass("bob, in a fresh browser with his own key, finds no thread in his sidebar (threads.search answered [])");

  // alice's thread's URL shows bob nothing: mnemo answers 404, as for a thread that does not exist
  expecting = (line) => line.includes(threadId) || /\b404\b/.test(line);
  const history = bob.waitForResponse((r) => r.url() === `${mnemoUrl}/threads/${threadId}/history`, {
    timeout: TIMEOUT,
  });
  await bob.goto(`${appUrl}/?${new URLSearchParams({ apiUrl: mnemoUrl, assistantId: "agent", threadId })}`);
  const denied = await history;
  if (denied.status() !== 404) throw new Error(`alice's thread's history answered bob ${denied.status()}`);
  await bob.locator("form textarea").waitFor({ timeout: TIMEOUT });
  await bob.waitForTimeout(1000);
  const shownToBob = await rendered(bob);
  if (shownToBob.length) throw new Error(`alice's thread shows bob ${JSON.stringify(shownToBob)}`);
  await shot(bob, "bob-on-alices-thread");
  expecting = null;
  const direct = await api(`/threads/${threadId}`, BOB_KEY);
  if (direct.status !== 404) throw new Error(`GET /threads/${threadId} with bob's key answered ${direct.status}`);
  pass(`alice's thread's URL shows bob no message: its history is 404 to his key (${expected.length} expected 404s)`);

  // bob's own chat: his agent knows none of alice's tasks; his sidebar lists his thread alone
  const mounted = sidebarSearch(bob);
  await bob.goto(`${appUrl}/?${q}`);
  await mounted;
  // the app refetches the sidebar's list a few seconds after a new thread gets its id
  const relisted = sidebarSearch(bob);
  await send(bob, "get tasks");
  await waitForConversation(
    bob,
    [
      { who: "human", has: ["get tasks"] },
      { who: "ai", has: ["list_tasks"] },
      { who: "ai", has: ["Tool Result: list_tasks", "You have no tasks."] },
      { who: "ai", has: ["You have no tasks."] },
    ],
    "bob's get tasks",
  );
  await bob.waitForURL(/[?&]threadId=/, { timeout: TIMEOUT });
  const bobThread = new URL(bob.url()).searchParams.get("threadId");
  const mine = await (await relisted).json();
  if (JSON.stringify(mine.map((t) => t.thread_id)) !== JSON.stringify([bobThread])) {
    throw new Error(`bob's sidebar search answered threads ${JSON.stringify(mine.map((t) => t.thread_id))}`);
  }
  await bob.locator("button p.truncate", { hasText: "get tasks" }).first().waitFor({ timeout: TIMEOUT });
  const listedForBob = await bob.locator("button p.truncate").allInnerTexts();
  if (listedForBob.length !== 1) throw new Error(`bob's sidebar lists ${JSON.stringify(listedForBob)}`);
  await shot(bob, "bob-own-thread");
  pass('bob\'s own "get tasks" finds no task of alice\'s, and his sidebar lists his thread alone');

  if (problems.length) throw new Error(`the browser saw errors:\n    ${problems.join("\n    ")}`);
  pass("bob's browser saw no errors but the expected 404s; every call to mnemo carried bob's key");
  await context.close();

  // alice's own LangGraph project, served behind mnemo by a graph worker: the app names its graph
  context = await browser();
  const own = context.pages()[0] ?? (await context.newPage());
  await watch(own, ALICE_KEY);
  expecting = null;
  await setUp(own, "alice", ALICE_KEY, "project");
  const before = streams.length;
  await send(own, "hello");
  const PROJECT_1 = [
    { who: "human", has: ["hello"] },
    { who: "ai", has: ["Hello: you said hello."] },
  ];
  await waitForConversation(own, PROJECT_1, "the project's first answer");
  await own.waitForURL(/[?&]threadId=/, { timeout: TIMEOUT });
  const projectThread = new URL(own.url()).searchParams.get("threadId") ?? "";
  await shot(own, "project-answer");
  if (streams.length !== before + 1) throw new Error(`expected a run stream of the project, saw ${streams.length - before}`);
  const n3 = await checkStream(streams[before], projectThread, "hello", "Hello: you said hello.");
  pass(`alice chats with her own LangGraph project (graph "project", run by a graph worker): the answer streamed (${n3})`);

  await send(own, "add bread");
  await waitForConversation(
    own,
    [
      ...PROJECT_1,
      { who: "human", has: ["add bread"] },
      { who: "ai", has: ["add_task", "bread"] },
      { who: "ai", has: ["Tool Result: add_task", "added bread"] },
      { who: "ai", has: ["Hello: done, added bread."] },
    ],
    "the project's tool call",
  );
  // the app shows the interrupt the project's subgraph asks with, from the stream
  await own.getByText("keep these tasks?").first().waitFor({ timeout: TIMEOUT });
  await shot(own, "project-tool-call");
  const asked = await api(`/threads/${projectThread}`, ALICE_KEY);
  const waiting = Object.values(asked.body?.interrupts ?? {}).flat();
  if (asked.status !== 200 || asked.body.status !== "interrupted" || waiting[0]?.value?.question !== "keep these tasks?") {
    throw new Error(`the project's thread, after the tool call: ${asked.status} ${JSON.stringify(asked.body).slice(0, 400)}`);
  }
  pass(`the project's tool call and its result are shown, and the interrupt() its subgraph asks with`);
  if (problems.length) throw new Error(`the browser saw errors:\n    ${problems.join("\n    ")}`);
  pass("alice's browser saw no errors on her project's chat");
} catch (e) {
  exitCode = 1;
  failure = e.message;
} finally {
  await context?.close().catch(() => {});
  server.close();
  for (const dir of profiles) fs.rmSync(dir, { recursive: true, force: true });
}
for (const [i, s] of streams.entries()) fs.writeFileSync(path.join(outDir, `stream-${i + 1}.sse`), s.body ?? "");
log.end();
await new Promise((r) => log.on("finish", r));
if (exitCode) {
  console.error(`  FAIL ${failure}`);
  console.error(`  --- ${logPath} ---\n${fs.readFileSync(logPath, "utf8")}  ---`);
}
console.log(`  ${checks.length} checks passed${exitCode ? ", then a failure" : ""}; browser log: ${logPath}`);
process.exit(exitCode);
