// An OpenAI-compatible chat-completions endpoint that takes its time, so a run is still going while
// the client disconnects, rejoins or cancels it. What it does depends on the last user message:
//   "... slowly ..."  streams SLOW_WORDS one every SLOW_PAUSE_MS, then ends;
//   "... forever ..." streams "Thinking" and then never finishes;
//   anything else     answers "ok" at once.

import { createServer } from "node:http";

export const SLOW_WORDS = Array.from({ length: 20 }, (_, i) => `w${i} `);
export const SLOW_PAUSE_MS = 60;

function lastUserText(body) {
  const user = (body?.messages ?? []).filter((m) => m.role === "user").at(-1);
  if (typeof user?.content === "string") return user.content;
  if (Array.isArray(user?.content)) return user.content.map((p) => p.text ?? "").join("");
  return "";
}

export async function startSlowModel() {
  const sockets = new Set();
  const requests = [];
  const server = createServer(async (req, res) => {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw || "{}");
    requests.push(body);
    const text = lastUserText(body);
    res.writeHead(200, { "content-type": "text/event-stream" });
    const delta = (d) =>
      res.write(
        `data: ${JSON.stringify({
          id: "chatcmpl-js",
          object: "chat.completion.chunk",
          choices: [{ index: 0, delta: d, finish_reason: null }],
        })}\n\n`,
      );
    if (text.includes("forever")) {
      delta({ role: "assistant", content: "Thinking" });
      return; // never ends: the run is in flight until it is cancelled
    }
    const words = text.includes("slowly") ? SLOW_WORDS : ["ok"];
    for (const w of words) {
      if (res.destroyed) return;
      delta({ role: "assistant", content: w });
      if (words.length > 1) await new Promise((r) => setTimeout(r, SLOW_PAUSE_MS));
    }
    res.end("data: [DONE]\n\n");
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
