// agent-chat-ui's chat session without React: the calls `useStream` (useStreamLGP in
// @langchain/langgraph-sdk/react, v1.15) makes, with the options agent-chat-ui gives it
// (src/providers/Stream.tsx: `fetchStateHistory: true`, `onCustomEvent`, `onThreadId`; the UI
// reads `stream.messages`, so "messages-tuple" and "values" are tracked modes), fed through the
// SDK's own StreamManager and MessageTupleManager, the code that turns the stream into the
// messages the UI renders. Only React's state plumbing is left out.

import { Client } from "@langchain/langgraph-sdk";
import {
  MessageTupleManager,
  StreamManager,
  getBranchContext,
  getMessagesMetadataMap,
  unique,
} from "@langchain/langgraph-sdk/ui";

const getMessages = (values) => (Array.isArray(values?.messages) ? values.messages : []);
const setMessages = (current, messages) => ({ ...current, messages });

/** agent-chat-ui's src/lib/ensure-tool-responses.ts: tool results the UI adds before a message. */
export function ensureToolCallsHaveResponses(messages) {
  const added = [];
  messages.forEach((message, index) => {
    if (message.type !== "ai" || message.tool_calls?.length === 0) return;
    if (messages[index + 1]?.type === "tool") return;
    for (const tc of message.tool_calls ?? []) {
      added.push({ type: "tool", tool_call_id: tc.id ?? "", name: tc.name, content: "Successfully handled tool call." });
    }
  });
  return added;
}

/** A message as the composer sends it (src/components/thread/index.tsx, handleSubmit). */
export function humanMessage(text) {
  return { id: crypto.randomUUID(), type: "human", content: [{ type: "text", text }] };
}

export class ChatSession {
  /**
   * @param {object} o
   * @param {string} o.apiUrl
   * @param {string} [o.apiKey] sent as x-api-key (agent-chat-ui passes its stored key as `apiKey`)
   * @param {string} [o.assistantId] agent-chat-ui's default: "agent"
   * @param {string|null} [o.threadId] the `?threadId=` of the page
   * @param {Map<string,string>|null} [o.reconnectOnMount] a sessionStorage stand-in: set, the
   *   hook remembers the running run, cancels it on stop() and rejoins it on mount
   * @param {typeof fetch} [o.fetch] goes to the Client's callerOptions (to watch the requests)
   */
  constructor({ apiUrl, apiKey, assistantId = "agent", threadId = null, reconnectOnMount = null, fetch } = {}) {
    this.client = new Client({ apiUrl, apiKey, callerOptions: fetch ? { fetch } : undefined });
    this.assistantId = assistantId;
    this.threadId = threadId;
    this.storage = reconnectOnMount;
    this.messageManager = new MessageTupleManager();
    this.stream = new StreamManager(this.messageManager, { throttle: false });
    this.historyData = undefined;
    this.branch = "";
    /** what the callbacks saw */
    this.threadIds = [];
    this.created = [];
    this.custom = [];
    this.errors = [];
    this.finished = [];
    /** every stream part the SDK yielded, per submit/join */
    this.parts = [];
    /** the messages the UI would render, after every change of the stream's state */
    this.renders = [];
    this.stream.subscribe(() => {
      this.renders.push(getMessages(this.values).map((m) => ({ id: m.id, type: m.type, content: m.content })));
    });
    // agent-chat-ui sets onCustomEvent, so "custom" is a callback mode
    this.callbackStreamMode = ["custom"];
    // agent-chat-ui reads stream.messages: the getter tracks these
    this.trackedStreamMode = ["messages-tuple", "values"];
    this.historyLimit = true; // fetchStateHistory: true
  }

  get branchContext() {
    return getBranchContext(this.branch, this.historyData ?? undefined);
  }
  get historyValues() {
    return this.branchContext.threadHead?.values ?? {};
  }
  get values() {
    return this.stream.values ?? this.historyValues;
  }
  get messages() {
    return getMessages(this.values);
  }
  get isLoading() {
    return this.stream.isLoading;
  }
  messagesMetadata() {
    return getMessagesMetadataMap({
      initialValues: {},
      history: this.historyData,
      getMessages,
      branchContext: this.branchContext,
    });
  }

  /** useThreadHistory's fetcher: `fetchStateHistory: true` reads 10 states. */
  async fetchHistory(threadId = this.threadId) {
    const limit = typeof this.historyLimit === "number" ? this.historyLimit : 10;
    this.historyData = await this.client.threads.getHistory(threadId, { limit });
    return this.historyData;
  }

  /** What mounting the page does: the history of `?threadId=`, then a rejoin of a stored run. */
  async mount() {
    if (this.threadId == null) return;
    await this.fetchHistory();
    const runId = this.storage?.get(`lg:stream:${this.threadId}`);
    if (runId) {
      const checkpointId = this.branchContext.threadHead?.checkpoint?.checkpoint_id ?? undefined;
      await this.joinStream(runId, undefined, { checkpointId });
    }
  }

  #record(iterable) {
    const parts = [];
    this.parts.push(parts);
    return (async function* () {
      for await (const part of iterable) {
        parts.push(structuredClone(part)); // the StreamManager rewrites what it is given
        yield part;
      }
    })();
  }

  #callbacks() {
    return {
      onCustomEvent: (event) => this.custom.push(event),
      onToolEvent: () => {},
    };
  }

  async #finishRun(id, callbackMeta) {
    try {
      await this.fetchHistory(id);
    } catch {}
    this.finished.push(callbackMeta);
  }

  /** useStreamLGP's submitToThread. */
  async submit(values, submitOptions = {}) {
    let usableThreadId = this.threadId;
    let callbackMeta;
    let rejoinKey;
    const includeImplicitBranch = true;
    const historyValues = this.historyValues;
    const branchContext = this.branchContext;
    const checkpointId = submitOptions.checkpoint?.checkpoint_id;
    this.branch = checkpointId != null ? branchContext.branchByCheckpoint[checkpointId]?.branch ?? "" : "";
    await this.stream.start(
      async (signal) => {
        this.stream.setStreamValues((v) => {
          const prev = { ...historyValues, ...v };
          if (submitOptions.optimisticValues != null) {
            return {
              ...prev,
              ...(typeof submitOptions.optimisticValues === "function"
                ? submitOptions.optimisticValues(prev)
                : submitOptions.optimisticValues),
            };
          }
          return { ...prev };
        });
        if (!usableThreadId) {
          usableThreadId = (
            await this.client.threads.create({ threadId: submitOptions.threadId, metadata: submitOptions.metadata, signal })
          ).thread_id;
          this.threadId = usableThreadId;
          this.threadIds.push(usableThreadId); // onThreadId
        }
        const streamMode = unique([
          ...(submitOptions.streamMode ?? []),
          ...this.trackedStreamMode,
          ...this.callbackStreamMode,
        ]);
        const viewingLatest =
          branchContext.threadHead?.checkpoint?.checkpoint_id === this.historyData?.[0]?.checkpoint?.checkpoint_id;
        let checkpoint =
          submitOptions.checkpoint ??
          (includeImplicitBranch && !viewingLatest ? branchContext.threadHead?.checkpoint : undefined) ??
          undefined;
        if (submitOptions.checkpoint === null) checkpoint = undefined;
        if (checkpoint != null) delete checkpoint.thread_id;
        const streamResumable = submitOptions.streamResumable ?? !!this.storage;
        this.signal = signal;
        return this.#record(
          this.client.runs.stream(usableThreadId, this.assistantId, {
            input: values,
            config: submitOptions.config,
            context: submitOptions.context,
            command: submitOptions.command,
            metadata: submitOptions.metadata,
            multitaskStrategy: submitOptions.multitaskStrategy,
            onCompletion: submitOptions.onCompletion,
            onDisconnect: submitOptions.onDisconnect ?? (streamResumable ? "continue" : "cancel"),
            signal,
            checkpoint,
            streamMode,
            streamSubgraphs: submitOptions.streamSubgraphs,
            streamResumable,
            onRunCreated: (params) => {
              callbackMeta = { run_id: params.run_id, thread_id: params.thread_id ?? usableThreadId };
              if (this.storage) {
                rejoinKey = `lg:stream:${usableThreadId}`;
                this.storage.set(rejoinKey, callbackMeta.run_id);
              }
              this.created.push(callbackMeta); // onCreated
            },
          }),
        );
      },
      {
        getMessages,
        setMessages,
        initialValues: historyValues,
        callbacks: this.#callbacks(),
        onSuccess: async () => {
          if (rejoinKey) this.storage?.delete(rejoinKey);
          return this.#finishRun(usableThreadId, callbackMeta);
        },
        onError: (error) => this.errors.push(error),
        onFinish: () => {},
      },
      { abortPrevious: false },
    );
  }

  /** useStreamLGP's joinStream: without a last event id it replays the run from its start. */
  async joinStream(runId, lastEventId, joinOptions) {
    lastEventId ??= "-1";
    const threadId = this.threadId;
    if (!threadId) return;
    const callbackMeta = { thread_id: threadId, run_id: runId };
    await this.stream.start(
      async (signal) => {
        this.signal = signal;
        return this.#record(
          this.client.runs.joinStream(threadId, runId, {
            signal,
            lastEventId,
            streamMode: joinOptions?.streamMode,
            checkpointId: joinOptions?.checkpointId,
          }),
        );
      },
      {
        getMessages,
        setMessages,
        initialValues: this.historyValues,
        callbacks: this.#callbacks(),
        onSuccess: async () => {
          this.storage?.delete(`lg:stream:${threadId}`);
          return this.#finishRun(threadId, callbackMeta);
        },
        onError: (error) => this.errors.push(error),
        onFinish: () => {},
        isReplaying: lastEventId === "-1",
      },
    );
  }

  /** useStreamLGP's stop(): aborts the stream; with reconnectOnMount it also cancels the run. */
  async stop() {
    const threadId = this.threadId;
    await this.stream.stop(this.historyValues, {
      onStop: () => {
        if (this.storage && threadId) {
          const runId = this.storage.get(`lg:stream:${threadId}`);
          if (runId) this.cancelled = this.client.runs.cancel(threadId, runId);
          this.storage.delete(`lg:stream:${threadId}`);
        }
      },
      read: threadId == null ? undefined : async () => (await this.fetchHistory(threadId))?.at(0)?.values ?? null,
    });
    await this.cancelled;
  }

  /** The page closes (or the network drops): the stream's fetch is aborted, nothing else. */
  disconnect() {
    this.stream.abortRef.abort();
  }
}
