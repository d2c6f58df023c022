// agent-chat-ui against mnemo, through the real @langchain/langgraph-sdk: the sidebar's thread
// list, a new chat, streaming answers, the history the UI renders from, a page reload that
// rejoins a running run, and the stop button cancelling one.
//
// Two mnemo processes share one fresh Postgres database: `builtin` (the offline model, for the
// chat itself) and `slow` (an OpenAI-compatible model that takes its time, so that a run is still
// going while the client disconnects, rejoins or cancels).
//
// Both require API keys (MNEMO_AUTH=api_key). The chat is a user's, alice's: her key (made with
// `mnemo keys create --user alice` on the shared database) goes to the SDK as agent-chat-ui passes
// it, `new Client({ apiUrl, apiKey })`. A second user, bob, sees none of her threads.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Client } from "@langchain/langgraph-sdk";
import { getBranchContext } from "@langchain/langgraph-sdk/ui";

import { createDatabase, createKey, startMnemo } from "./lib/mnemo.mjs";
import { SLOW_WORDS, startSlowModel } from "./lib/slow-model.mjs";
import { ChatSession, ensureToolCallsHaveResponses, humanMessage } from "./lib/use-stream.mjs";

// the id the LangGraph server derives for graph `agent` (uuid5), which mnemo uses too
const AGENT_ASSISTANT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca";

// the SDK falls back on these when no key is given: every client here is given its key
for (const v of ["LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"]) delete process.env[v];

let db;
let aliceKey;
let builtin;
let slow;
let model;
/** every request the SDK made, as "METHOD /path?query" plus its JSON body */
const requests = [];

const watch = async (url, init) => {
  const u = new URL(url);
  requests.push({
    method: init?.method ?? "GET",
    path: u.pathname + u.search,
    headers: init?.headers ?? {},
    body: typeof init?.body === "string" ? JSON.parse(init.body) : undefined,
  });
  return fetch(url, init);
};

before(async () => {
  db = createDatabase();
  aliceKey = createKey(db.url, { user: "alice", name: "agent-chat-ui" });
  model = await startSlowModel();
  builtin = await startMnemo(db.url, { MNEMO_LLM: "builtin" }, "mnemo-builtin");
  slow = await startMnemo(
    db.url,
    {
      MNEMO_LLM: "openai",
      MNEMO_LLM_BASE_URL: model.baseUrl,
      MNEMO_LLM_API_KEY: "sk-test",
      MNEMO_LLM_MODEL: "slow-test",
    },
    "mnemo-slow",
  );
});

after(async () => {
  await builtin?.stop();
  await slow?.stop();
  await model?.stop();
  db?.drop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function withLog(server, fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (e) {
      e.message += `\n--- ${server()?.url} log (tail) ---\n${server()?.log().split("\n").slice(-40).join("\n")}`;
      throw e;
    }
  };
}

const text = (content) =>
  typeof content === "string" ? content : content.map((b) => (b.type === "text" ? b.text : "")).join("");

/** The `messages` (messages-tuple) parts of one message id, in order. */
const chunksOf = (parts, id) => parts.filter((p) => p.event === "messages" && p.data[0].id === id).map((p) => p.data[0]);

/** Checks one streamed run the way the UI consumes it; answers the final AI message. */
function checkStreamedRun(session, parts, input) {
  // metadata first, naming the run onRunCreated reported
  assert.equal(parts[0].event, "metadata");
  const created = session.created.at(-1);
  assert.equal(parts[0].data.run_id, created.run_id, "onRunCreated names the streamed run");
  assert.equal(created.thread_id, session.threadId, "Content-Location names the thread");

  // resumable: every event has an id, strictly increasing
  const ids = parts.map((p) => Number(p.id));
  assert.ok(ids.every((id, i) => Number.isInteger(id) && (i === 0 || id > ids[i - 1])), `ids ${ids}`);

  const names = new Set(parts.map((p) => p.event));
  for (const n of names) assert.ok(["metadata", "values", "messages"].includes(n), `unexpected event ${n}`);

  // the first values event is the input, the last one the whole conversation
  const values = parts.filter((p) => p.event === "values").map((p) => p.data);
  assert.ok(values.length >= 2, "values after each step");
  assert.equal(text(values[0].messages.at(-1).content), input);
  const final = values.at(-1).messages;
  const answer = final.at(-1);
  assert.equal(answer.type, "ai");

  // messages-tuple: the answer token by token, chunks sharing the answer's id, the last one marked
  const chunks = chunksOf(parts, answer.id);
  assert.ok(chunks.length > 1, `the answer is streamed in chunks (${chunks.length})`);
  assert.ok(chunks.every((c) => c.type === "AIMessageChunk"));
  assert.equal(chunks.map((c) => c.content).join(""), answer.content, "the chunks make the answer");
  assert.equal(chunks.at(-1).chunk_position, "last");
  for (const p of parts.filter((p) => p.event === "messages")) {
    const [message, meta] = p.data;
    // the model's messages stream as chunks; a tool's message comes whole, from `tools`
    assert.equal(meta.langgraph_node, message.type === "tool" ? "tools" : "agent");
    assert.equal(meta.run_id, created.run_id);
    assert.equal(meta.thread_id, session.threadId);
  }

  // what the UI renders: the answer grows token by token, then the final state; ids unique
  const shown = session.renders.filter((r) => r.at(-1)?.id === answer.id).map((r) => text(r.at(-1).content));
  assert.ok(
    shown.some((s) => s.length > 0 && s.length < answer.content.length && answer.content.startsWith(s)),
    `the UI showed part of the answer while it streamed: ${JSON.stringify(shown)}`,
  );
  assert.deepEqual(
    session.messages.map((m) => m.id),
    final.map((m) => m.id),
  );
  assert.equal(new Set(final.map((m) => m.id)).size, final.length, "message ids are unique");
  assert.deepEqual(ensureToolCallsHaveResponses(session.messages), [], "every tool call has its result");
  return answer;
}

let chat; // the session of the first chat, shared by the tests that follow it
let firstRunId;

test(
  "the sidebar lists no thread on a fresh server; /info answers",
  withLog(
    () => builtin,
    async () => {
      assert.ok((await fetch(`${builtin.url}/info`)).ok, "agent-chat-ui's connection check, without a key");
      const client = new Client({ apiUrl: builtin.url, apiKey: aliceKey });
      assert.deepEqual(await client.threads.search({ metadata: { graph_id: "agent" }, limit: 100 }), []);
    },
  ),
);

test(
  "a new chat: 'add task buy milk' creates a thread and streams the answer",
  withLog(
    () => builtin,
    async () => {
      chat = new ChatSession({ apiUrl: builtin.url, apiKey: aliceKey, fetch: watch });
      await chat.mount(); // no ?threadId= yet
      const first = requests.length;
      const msg = humanMessage("add task buy milk");
      await chat.submit(
        { messages: [...ensureToolCallsHaveResponses(chat.messages), msg], context: undefined },
        {
          streamMode: ["values"],
          streamSubgraphs: true,
          streamResumable: true,
          optimisticValues: (prev) => ({ ...prev, messages: [...(prev.messages ?? []), msg] }),
        },
      );
      assert.deepEqual(chat.errors, []);
      assert.equal(chat.threadIds.length, 1, "onThreadId fired once");
      assert.equal(chat.created.length, 1, "onRunCreated fired once");
      firstRunId = chat.created[0].run_id;
      assert.match(firstRunId, /^[0-9a-f-]{36}$/);

      // the requests: create the thread, stream the run as agent-chat-ui asks, check the run, read history
      const made = requests.slice(first);
      const path = made.map((r) => `${r.method} ${r.path}`);
      const t = chat.threadId;
      assert.deepEqual(path, [
        "POST /threads",
        `POST /threads/${t}/runs/stream`,
        `GET /threads/${t}/runs/${firstRunId}`,
        `POST /threads/${t}/history`,
      ]);
      for (const r of made) assert.equal(r.headers["x-api-key"], aliceKey, `the key on ${r.method} ${r.path}`);
      const body = made[1].body;
      assert.deepEqual(body.stream_mode, ["values", "messages-tuple", "custom"]);
      assert.equal(body.stream_subgraphs, true);
      assert.equal(body.stream_resumable, true);
      assert.equal(body.on_disconnect, "continue");
      assert.equal(body.assistant_id, "agent");
      assert.deepEqual(made[3].body, { limit: 10 });

      // the run the SDK checked after the stream closed had ended, so it did not reconnect
      const run = await chat.client.runs.get(t, firstRunId);
      assert.equal(run.status, "success");
      assert.equal(run.thread_id, t);
      assert.equal(run.assistant_id, AGENT_ASSISTANT_ID);

      const parts = chat.parts.at(-1);
      const answer = checkStreamedRun(chat, parts, "add task buy milk");
      assert.match(answer.content, /buy milk/);
      // the model called create_task with the title, streamed as a tool-call chunk
      const toolCall = parts.find((p) => p.event === "messages" && p.data[0].tool_call_chunks?.length);
      assert.ok(toolCall, "a tool-call chunk");
      assert.equal(toolCall.data[0].tool_call_chunks[0].name, "create_task");
      assert.deepEqual(JSON.parse(toolCall.data[0].tool_call_chunks[0].args), { title: "buy milk" });
      assert.deepEqual(
        chat.messages.map((m) => m.type),
        ["human", "ai", "tool", "ai"],
      );
      assert.equal(chat.messages[0].id, msg.id, "the human message keeps the id the UI gave it");
      assert.deepEqual(chat.messages[0].content, msg.content, "content blocks come back as sent");
      assert.equal(chat.messages[2].name, "create_task");
      assert.equal(chat.messages[2].tool_call_id, chat.messages[1].tool_calls[0].id);
    },
  ),
);

test(
  "the history the UI renders from (getHistory, limit 10)",
  withLog(
    () => builtin,
    async () => {
      const history = chat.historyData;
      assert.ok(history.length >= 3 && history.length <= 10, `history of ${history.length}`);
      const head = history[0];
      assert.deepEqual(
        head.values.messages.map((m) => m.id),
        chat.messages.map((m) => m.id),
        "the head holds what was streamed",
      );
      assert.match(head.values.messages.at(-1).content, /buy milk/);
      assert.deepEqual(head.next, []);
      assert.deepEqual(head.tasks, []);
      assert.equal(head.checkpoint.thread_id, chat.threadId);
      assert.equal(head.checkpoint.checkpoint_ns, "");
      assert.equal(head.metadata.run_id, firstRunId);
      // newest first, each state's parent is the next one; the oldest is the input
      for (let i = 0; i + 1 < history.length; i++) {
        assert.equal(history[i].parent_checkpoint.checkpoint_id, history[i + 1].checkpoint.checkpoint_id);
        assert.ok(history[i].created_at >= history[i + 1].created_at);
        assert.ok(history[i].values.messages.length >= history[i + 1].values.messages.length);
      }
      const oldest = history.at(-1);
      assert.equal(oldest.metadata.source, "input");
      assert.equal(oldest.parent_checkpoint, null);

      // the UI's branch view: one linear branch ending at the head
      const ctx = getBranchContext("", history);
      assert.equal(ctx.threadHead.checkpoint.checkpoint_id, head.checkpoint.checkpoint_id);
      assert.equal(ctx.flatHistory.length, history.length);
      // getMessagesMetadata: each message's first state, whose parent edit/regenerate forks from
      const meta = chat.messagesMetadata();
      assert.equal(meta.length, 4);
      for (const [i, m] of meta.entries()) {
        assert.equal(m.messageId, chat.messages[i].id);
        assert.ok(m.firstSeenState, `message ${i} has the state it first appeared in`);
      }
      assert.equal(meta[0].firstSeenState.checkpoint.checkpoint_id, oldest.checkpoint.checkpoint_id);
      assert.equal(
        meta[3].firstSeenState.checkpoint.checkpoint_id,
        head.checkpoint.checkpoint_id,
        "the answer first appears at the head",
      );
    },
  ),
);

test(
  "'get tasks' on the same thread lists buy milk",
  withLog(
    () => builtin,
    async () => {
      const first = requests.length;
      const msg = humanMessage("get tasks");
      await chat.submit(
        { messages: [...ensureToolCallsHaveResponses(chat.messages), msg] },
        {
          streamMode: ["values"],
          streamSubgraphs: true,
          streamResumable: true,
          optimisticValues: (prev) => ({ ...prev, messages: [...(prev.messages ?? []), msg] }),
        },
      );
      assert.deepEqual(chat.errors, []);
      assert.equal(chat.threadIds.length, 1, "no new thread");
      const streamReq = requests.slice(first).find((r) => r.path.endsWith("/runs/stream"));
      assert.equal(streamReq.body.checkpoint, undefined, "viewing the latest state, no fork");
      const answer = checkStreamedRun(chat, chat.parts.at(-1), "get tasks");
      assert.match(answer.content, /buy milk/);
      assert.equal(chat.messages.length, 8);
      assert.match(chat.historyData[0].values.messages.at(-1).content, /buy milk/);
    },
  ),
);

test(
  "the sidebar lists the thread by graph_id and by assistant_id",
  withLog(
    () => builtin,
    async () => {
      const client = new Client({ apiUrl: builtin.url, apiKey: aliceKey });
      for (const metadata of [{ graph_id: "agent" }, { assistant_id: AGENT_ASSISTANT_ID }]) {
        const threads = await client.threads.search({ metadata, limit: 100 });
        assert.deepEqual(
          threads.map((t) => t.thread_id),
          [chat.threadId],
          JSON.stringify(metadata),
        );
        const [t] = threads;
        assert.equal(t.status, "idle");
        assert.equal(t.metadata.graph_id, "agent");
        // the sidebar's label: the first message's text
        assert.equal(text(t.values.messages[0].content), "add task buy milk");
        assert.match(t.values.messages.at(-1).content, /buy milk/);
      }
      assert.deepEqual(await client.threads.search({ metadata: { graph_id: "legacy" }, limit: 100 }), []);
    },
  ),
);

/** Resolves to the HTTP status `promise` was rejected with (the SDK's HTTPError), or fails. */
async function statusOf(promise) {
  try {
    await promise;
  } catch (e) {
    if (typeof e?.status === "number") return e.status;
    throw e;
  }
  throw new Error("the call succeeded");
}

test(
  "a second user's key sees none of the first user's threads",
  withLog(
    () => builtin,
    async () => {
      const bobKey = createKey(db.url, { user: "bob", name: "agent-chat-ui" });
      const bob = new Client({ apiUrl: builtin.url, apiKey: bobKey });
      // bob's sidebar, as agent-chat-ui fills it, and any other search: none of alice's threads
      for (const metadata of [{ graph_id: "agent" }, { assistant_id: AGENT_ASSISTANT_ID }, {}]) {
        assert.deepEqual(await bob.threads.search({ metadata, limit: 100 }), [], JSON.stringify(metadata));
      }
      // her thread is not there for him: every read is a 404
      const t = chat.threadId;
      assert.equal(await statusOf(bob.threads.get(t)), 404);
      assert.equal(await statusOf(bob.threads.getHistory(t, { limit: 10 })), 404);
      assert.equal(await statusOf(bob.threads.getState(t)), 404);
      assert.equal(await statusOf(bob.runs.list(t)), 404);
      assert.equal(await statusOf(bob.runs.get(t, firstRunId)), 404);

      // bob chats on a thread of his own: the agent knows none of alice's tasks, and his
      // sidebar lists his thread alone
      const session = new ChatSession({ apiUrl: builtin.url, apiKey: bobKey });
      await session.submit(
        { messages: [humanMessage("get tasks")] },
        { streamMode: ["values"], streamSubgraphs: true, streamResumable: true },
      );
      assert.deepEqual(session.errors, []);
      assert.doesNotMatch(text(session.messages.at(-1).content), /buy milk/);
      const his = await bob.threads.search({ metadata: { graph_id: "agent" }, limit: 100 });
      assert.deepEqual(his.map((x) => x.thread_id), [session.threadId]);
      // and alice's sidebar is unchanged
      const alice = new Client({ apiUrl: builtin.url, apiKey: aliceKey });
      const hers = await alice.threads.search({ metadata: { graph_id: "agent" }, limit: 100 });
      assert.deepEqual(hers.map((x) => x.thread_id), [t]);
    },
  ),
);

test(
  "no key, or a key mnemo does not know, is 401",
  withLog(
    () => builtin,
    async () => {
      for (const apiKey of [null, "mnemo_000000000000_notakey", "not-a-key"]) {
        const anonymous = new Client({ apiUrl: builtin.url, apiKey });
        assert.equal(await statusOf(anonymous.threads.search({ limit: 10 })), 401, `key ${apiKey}`);
        assert.equal(await statusOf(anonymous.threads.get(chat.threadId)), 401);
        assert.equal(await statusOf(anonymous.threads.getHistory(chat.threadId, { limit: 10 })), 401);
        assert.equal(await statusOf(anonymous.threads.create({})), 401);
      }
      const raw = await fetch(`${builtin.url}/threads/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      assert.equal(raw.status, 401);
      assert.ok(raw.headers.get("www-authenticate"), "401 names the scheme in WWW-Authenticate");
      assert.ok((await raw.json()).detail);
    },
  ),
);

test(
  "opening the thread's page shows the conversation from its history",
  withLog(
    () => builtin,
    async () => {
      const page = new ChatSession({ apiUrl: builtin.url, apiKey: aliceKey, threadId: chat.threadId });
      await page.mount();
      assert.deepEqual(
        page.messages.map((m) => [m.id, m.type]),
        chat.messages.map((m) => [m.id, m.type]),
      );
      assert.equal(page.isLoading, false);
    },
  ),
);

test(
  "a dropped connection is rejoined with Last-Event-ID; a reload replays the run",
  withLog(
    () => slow,
    async () => {
      const storage = new Map();
      const session = new ChatSession({ apiUrl: slow.url, apiKey: aliceKey, reconnectOnMount: storage });
      const msg = humanMessage("say something slowly");
      const submitted = session.submit(
        { messages: [msg] },
        { streamMode: ["values"], streamSubgraphs: true, streamResumable: true },
      );
      // the connection drops after a few words of the answer
      const before = await until("the first words", () => {
        const parts = session.parts.at(-1) ?? [];
        return parts.filter((p) => p.event === "messages").length >= 3 && parts.slice();
      });
      session.disconnect();
      await submitted;
      assert.deepEqual(session.errors, [], "an abort is not an error");
      const { run_id: runId, thread_id: threadId } = session.created[0];
      assert.equal(storage.get(`lg:stream:${threadId}`), runId, "the hook remembers the running run");
      const run = await session.client.runs.get(threadId, runId);
      assert.equal(run.status, "running", "on_disconnect continue: the run goes on");

      // the SDK's rejoin: everything after the last event seen, then the rest live
      const lastId = before.at(-1).id;
      const rest = [];
      for await (const p of session.client.runs.joinStream(threadId, runId, { lastEventId: lastId })) rest.push(p);
      const all = [...before, ...rest];
      assert.deepEqual(
        all.map((p) => Number(p.id)),
        all.map((_, i) => i + 1),
        "every event once, in order",
      );
      const chunks = all.filter((p) => p.event === "messages").map((p) => p.data[0]);
      assert.deepEqual(
        chunks.map((c) => c.content),
        [...SLOW_WORDS, ""],
        "each word as the model sent it, then the empty last chunk",
      );
      assert.equal(chunks.at(-1).chunk_position, "last");
      assert.equal(all.at(-1).event, "values");
      assert.equal(all.at(-1).data.messages.at(-1).content, SLOW_WORDS.join(""));
      assert.equal((await session.client.runs.get(threadId, runId)).status, "success");

      // a reload: the page mounts on ?threadId=, reads the history, and rejoins the stored run
      // from its first event (Last-Event-ID -1), as useStream's reconnectOnMount does
      const page = new ChatSession({ apiUrl: slow.url, apiKey: aliceKey, threadId, reconnectOnMount: storage });
      await page.mount();
      assert.deepEqual(page.errors, []);
      const replay = page.parts.at(-1);
      assert.deepEqual(
        replay.map((p) => [p.id, p.event]),
        all.map((p) => [p.id, p.event]),
        "the whole run again",
      );
      assert.equal(storage.size, 0, "a finished rejoin forgets the run");
      assert.deepEqual(
        page.messages.map((m) => [m.type, text(m.content)]),
        [
          ["human", "say something slowly"],
          ["ai", SLOW_WORDS.join("")],
        ],
        "the replayed answer is shown once",
      );
    },
  ),
);

test(
  "the stop button cancels a run in flight (runs.cancel); its input stays",
  withLog(
    () => slow,
    async () => {
      const storage = new Map();
      const session = new ChatSession({ apiUrl: slow.url, apiKey: aliceKey, reconnectOnMount: storage, fetch: watch });
      const msg = humanMessage("think forever");
      const submitted = session.submit(
        { messages: [msg] },
        { streamMode: ["values"], streamSubgraphs: true, streamResumable: true },
      );
      await until("the model to start answering", () =>
        session.renders.some((r) => r.at(-1)?.type === "ai" && text(r.at(-1).content) === "Thinking"),
      );
      const { run_id: runId, thread_id: threadId } = session.created[0];
      assert.equal((await session.client.runs.get(threadId, runId)).status, "running");
      assert.equal((await session.client.threads.get(threadId)).status, "busy");

      const first = requests.length;
      await session.stop();
      await submitted;
      const cancel = requests.slice(first).find((r) => r.path.includes("/cancel"));
      assert.equal(cancel?.path, `/threads/${threadId}/runs/${runId}/cancel?wait=0&action=interrupt`);

      await until("the run to end interrupted", async () => {
        return (await session.client.runs.get(threadId, runId)).status === "interrupted";
      });
      const runs = await session.client.runs.list(threadId);
      assert.deepEqual(
        runs.map((r) => [r.run_id, r.status]),
        [[runId, "interrupted"]],
      );
      // the model's node had not finished: the thread is `interrupted`, as LangGraph's
      assert.equal((await session.client.threads.get(threadId)).status, "interrupted");
      // what stop() shows: the history head, with the human message kept
      const head = (await session.fetchHistory(threadId))[0];
      assert.deepEqual(
        head.values.messages.map((m) => [m.type, text(m.content)]),
        [["human", "think forever"]],
      );

      // the thread takes the next message
      const next = humanMessage("hello again");
      await session.submit({ messages: [next] }, { streamMode: ["values"], streamSubgraphs: true, streamResumable: true });
      assert.deepEqual(session.errors, []);
      assert.deepEqual(
        session.messages.map((m) => [m.type, text(m.content)]),
        [
          ["human", "think forever"],
          ["human", "hello again"],
          ["ai", "ok"],
        ],
      );
    },
  ),
);

test(
  "a background run cancelled with wait=true answers interrupted",
  withLog(
    () => slow,
    async () => {
      const client = new Client({ apiUrl: slow.url, apiKey: aliceKey });
      const thread = await client.threads.create({ metadata: { graph_id: "agent" } });
      let created;
      const run = await client.runs.create(thread.thread_id, "agent", {
        input: { messages: [humanMessage("work on it forever")] },
        onRunCreated: (m) => (created = m),
      });
      assert.equal(created?.run_id, run.run_id, "onRunCreated from Content-Location");
      assert.ok(["pending", "running"].includes(run.status), run.status);
      await until("the model to be asked", () =>
        model.requests.some((b) => JSON.stringify(b.messages).includes("work on it forever")),
      );
      const cancelled = await client.runs.cancel(thread.thread_id, run.run_id, true);
      assert.equal(cancelled.status, "interrupted");
      assert.equal((await client.runs.get(thread.thread_id, run.run_id)).status, "interrupted");
      const values = await client.runs.join(thread.thread_id, run.run_id);
      assert.deepEqual(
        values.messages.map((m) => text(m.content)),
        ["work on it forever"],
      );
    },
  ),
);

test(
  "a mnemo stopped with a run in flight ends it interrupted; the other mnemo reads it so",
  withLog(
    () => slow,
    async () => {
      const client = new Client({ apiUrl: slow.url, apiKey: aliceKey });
      const thread = await client.threads.create({});
      const run = await client.runs.create(thread.thread_id, "agent", {
        input: { messages: [humanMessage("keep going forever")] },
      });
      await until("the model to be asked", () =>
        model.requests.some((b) => JSON.stringify(b.messages).includes("keep going forever")),
      );
      const started = Date.now();
      await slow.stop();
      assert.ok(Date.now() - started < 5000, `mnemo took ${Date.now() - started} ms to stop`);
      const other = new Client({ apiUrl: builtin.url, apiKey: aliceKey });
      assert.equal((await other.runs.get(thread.thread_id, run.run_id)).status, "interrupted");
      assert.equal((await other.threads.get(thread.thread_id)).status, "idle");
    },
  ),
);
