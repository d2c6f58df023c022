//! Domain types: what the persistence layer takes and returns, parsed and validated at the edge.
//! Timestamps serialise as the LangGraph API writes them (ISO-8601, microseconds, `+00:00`).

use chrono::{DateTime, Utc};
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// Serialises a timestamp the way LangGraph clients expect it.
pub fn ts<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(t))
}

pub fn format_ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

// ---------------------------------------------------------------------------------------------
// Store

/// A validated store namespace: non-empty labels without `.` (they are joined by `.` on disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(Vec<String>);

impl Namespace {
    /// Validates labels; `allow_empty` for search prefixes, where `[]` means "everything".
    pub fn parse(labels: Vec<String>, allow_empty: bool) -> Result<Namespace, String> {
        if labels.is_empty() && !allow_empty {
            return Err("Namespace cannot be empty.".into());
        }
        if labels.len() > crate::limits::MAX_NAMESPACE_LABELS {
            return Err(format!(
                "Namespace has {} labels; at most {} are allowed",
                labels.len(),
                crate::limits::MAX_NAMESPACE_LABELS
            ));
        }
        for label in &labels {
            if label.is_empty() {
                return Err(format!(
                    "Namespace labels cannot be empty strings. Got {labels:?}"
                ));
            }
            if label.contains('.') {
                return Err(format!(
                    "Namespace labels cannot contain periods ('.'). Got {label:?}"
                ));
            }
        }
        Ok(Namespace(labels))
    }

    /// The dotted form a GET query carries (`a.b`).
    pub fn parse_dotted(dotted: &str) -> Result<Namespace, String> {
        if dotted.is_empty() {
            return Namespace::parse(Vec::new(), false);
        }
        Namespace::parse(dotted.split('.').map(str::to_string).collect(), false)
    }

    pub fn prefix(&self) -> String {
        self.0.join(".")
    }

    pub fn labels(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// JSON text kept as the client sent it: checked once ([`RawJson::checked_object`]) but never
/// built into a `Value` tree, which takes several times the text's size. Clones share the text.
#[derive(Debug, Clone, diesel::AsExpression, diesel::FromSqlRow)]
#[diesel(sql_type = diesel::sql_types::Jsonb)]
#[diesel(sql_type = diesel::sql_types::Json)]
pub struct RawJson(Arc<Box<RawValue>>);

impl RawJson {
    /// JSON text read back from the database (valid JSON: only checked, never parsed into a tree).
    pub fn from_text(text: String) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text).map(|raw| RawJson(Arc::new(raw)))
    }

    /// An empty object.
    pub fn empty_object() -> RawJson {
        RawJson::from_text("{}".into()).unwrap_or_else(|_| RawJson(Arc::new(null_raw())))
    }

    /// The document as a `Value` tree (for the small documents mnemo reads into).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }

    /// Reads the fields of `T` from the document; the rest is skipped, not built.
    pub fn fields<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.get()).ok()
    }

    /// The JSON of a `Value` (for callers that already hold one).
    pub fn from_value(v: &Value) -> RawJson {
        let text = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
        RawJson(Arc::new(
            RawValue::from_string(text).unwrap_or_else(|_| null_raw()),
        ))
    }

    /// The text, exactly as it will be stored.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Checks JSON text the way a parse into a `Value` would, and more: it must be an object
    /// and hold no NUL character (Postgres cannot store one; SQLite could). A
    /// document with a key given twice in one object is rewritten as a `Value` would keep it
    /// (the last one wins), so every backend stores and filters the same document.
    pub fn checked_object(self, what: &str) -> Result<RawJson, String> {
        if !self.get().starts_with('{') {
            return Err(format!("{what} must be an object"));
        }
        let mut found = Findings::default();
        let mut de = serde_json::Deserializer::from_str(self.get());
        serde::de::DeserializeSeed::deserialize(Walk(&mut found), &mut de)
            .map_err(|e| format!("{what}: {e}"))?;
        if found.nul {
            return Err(format!(
                "{what} must not contain the NUL character (\\u0000)"
            ));
        }
        if found.duplicate_keys {
            let v: Value = serde_json::from_str(self.get()).map_err(|e| format!("{what}: {e}"))?;
            return Ok(RawJson::from_value(&v));
        }
        Ok(self)
    }
}

fn null_raw() -> Box<RawValue> {
    RawValue::NULL.to_owned()
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for RawJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(d).map(|raw| RawJson(Arc::new(raw)))
    }
}

/// What a walk over JSON text saw.
#[derive(Default)]
struct Findings {
    nul: bool,
    duplicate_keys: bool,
}

/// Visits a JSON document without keeping it: strings are checked for NUL, each object's keys
/// for repeats (only the keys of the objects on the current path are held).
struct Walk<'f>(&'f mut Findings);

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.nul |= v.contains('\0');
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys: std::collections::HashSet<std::borrow::Cow<'de, str>> = Default::default();
        while let Some(key) = map.next_key_seed(Key)? {
            self.0.nul |= key.contains('\0');
            if !keys.insert(key) {
                self.0.duplicate_keys = true;
            }
            map.next_value_seed(Walk(self.0))?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> serde::de::DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_string()))
    }
}

/// One item of the store.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreItem {
    pub namespace: Vec<String>,
    pub key: String,
    #[schema(value_type = Object)]
    pub value: Value,
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub updated_at: DateTime<Utc>,
}

/// A comparison in a store search filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl FilterOp {
    pub fn sql(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::Ne => "<>",
            FilterOp::Gt => ">",
            FilterOp::Gte => ">=",
            FilterOp::Lt => "<",
            FilterOp::Lte => "<=",
        }
    }
}

/// `field op value`, for a top-level field of an item's value. Ordering comparisons take a
/// number (compared as a number) or a string (compared as a string), nothing else.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    pub field: String,
    pub op: FilterOp,
    pub value: Value,
}

impl FieldFilter {
    /// Parses the LangGraph filter object: `{field: value}` or `{field: {"$op": value, …}}`.
    pub fn parse_all(filter: &Value) -> Result<Vec<FieldFilter>, String> {
        let obj = match filter {
            Value::Null => return Ok(Vec::new()),
            Value::Object(o) => o,
            _ => return Err("filter must be an object".into()),
        };
        let mut out = Vec::new();
        for (field, cond) in obj {
            let ops = match cond {
                Value::Object(o) if !o.is_empty() && o.keys().all(|k| k.starts_with('$')) => o,
                other => {
                    out.push(FieldFilter {
                        field: field.clone(),
                        op: FilterOp::Eq,
                        value: other.clone(),
                    });
                    continue;
                }
            };
            for (op, value) in ops {
                let op = match op.as_str() {
                    "$eq" => FilterOp::Eq,
                    "$ne" => FilterOp::Ne,
                    "$gt" => FilterOp::Gt,
                    "$gte" => FilterOp::Gte,
                    "$lt" => FilterOp::Lt,
                    "$lte" => FilterOp::Lte,
                    other => return Err(format!("Unsupported filter operator: {other}")),
                };
                let ordering = !matches!(op, FilterOp::Eq | FilterOp::Ne);
                if ordering && !(value.is_number() || value.is_string()) {
                    return Err(format!(
                        "{field}: ordering comparisons take a number or a string"
                    ));
                }
                out.push(FieldFilter {
                    field: field.clone(),
                    op,
                    value: value.clone(),
                });
            }
        }
        if out.len() > crate::limits::MAX_FILTER_CONDITIONS {
            return Err(format!(
                "filter has {} conditions; at most {} are allowed",
                out.len(),
                crate::limits::MAX_FILTER_CONDITIONS
            ));
        }
        Ok(out)
    }
}

/// A store search.
#[derive(Debug, Clone)]
pub struct StoreSearch {
    pub namespace_prefix: Namespace,
    pub filter: Vec<FieldFilter>,
    pub limit: i64,
    pub offset: i64,
    pub refresh_ttl: bool,
}

// ---------------------------------------------------------------------------------------------
// Threads

/// A thread's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThreadStatus {
    Idle,
    Busy,
    Interrupted,
    Error,
}

impl ThreadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadStatus::Idle => "idle",
            ThreadStatus::Busy => "busy",
            ThreadStatus::Interrupted => "interrupted",
            ThreadStatus::Error => "error",
        }
    }
}

/// A thread as the LangGraph API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Thread {
    pub thread_id: String,
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub updated_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub state_updated_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: RawJson,
    #[schema(value_type = ThreadStatus)]
    pub status: String,
    #[schema(value_type = Object)]
    pub config: Value,
    /// The graph's current state (any JSON the graph keeps).
    pub values: Option<Value>,
    /// What an interrupted thread waits on, by task id.
    #[schema(value_type = Object)]
    pub interrupts: Value,
    /// The user the thread belongs to (`None`: a service's). Not on the wire.
    #[serde(skip)]
    pub owner: Option<String>,
}

/// A thread to create.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub thread_id: String,
    pub metadata: RawJson,
    pub owner: Option<String>,
    /// Return the existing thread instead of a conflict.
    pub do_nothing_if_exists: bool,
}

/// Which threads a search or count matches.
#[derive(Debug, Clone, Default)]
pub struct ThreadFilter {
    /// JSON containment on the thread's metadata.
    pub metadata: Option<Value>,
    /// JSON containment on the thread's current values.
    pub values: Option<Value>,
    pub ids: Option<Vec<String>>,
    pub status: Option<ThreadStatus>,
    /// Only this user's threads (a user principal's every list).
    pub owner: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ThreadSortBy {
    ThreadId,
    Status,
    CreatedAt,
    UpdatedAt,
    StateUpdatedAt,
}

/// A page of threads.
#[derive(Debug, Clone)]
pub struct ThreadSearch {
    pub filter: ThreadFilter,
    pub sort_by: ThreadSortBy,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
    /// The page stops growing once its threads hold this many bytes (at least one row).
    pub max_bytes: usize,
}

// ---------------------------------------------------------------------------------------------
// Pages bounded by bytes

/// About the memory `v` takes as a tree: a `serde_json` tree costs several times its text
/// (an object's map node alone is ~600 bytes), so pages are bounded by this, not by the text.
pub fn tree_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => 32 + s.len(),
        Value::Array(items) => 32 + items.iter().map(tree_bytes).sum::<usize>(),
        Value::Object(map) => {
            600 + map
                .iter()
                .map(|(k, v)| 32 + k.len() + tree_bytes(v))
                .sum::<usize>()
        }
        _ => 32,
    }
}

/// Rows a byte-bounded page asks the database for first: one, as nothing tells the size of a
/// row before it is read (later queries ask for as many as the bytes left hold).
pub const FIRST_CHUNK: usize = 1;

/// Rows the next query of a byte-bounded page asks for: as many as the bytes left hold at the
/// size of the rows so far (at least one), never more than the `left` rows the page still wants.
pub fn next_chunk(rows: usize, bytes: usize, max_bytes: usize, left: usize) -> usize {
    let each = (bytes / rows.max(1)).max(1);
    (max_bytes.saturating_sub(bytes) / each).clamp(1, left.max(1))
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// A channel value stored once per version: a type tag and opaque bytes (`None` = no value).
#[derive(Debug, Clone)]
pub struct Blob {
    pub channel: String,
    pub version: String,
    pub type_: String,
    pub data: Option<Vec<u8>>,
    /// A JSON rendering of opaque `data`, given by its writer, for showing the value as state.
    pub value: Option<Value>,
}

/// The task id of LangGraph's writes made by no task (`NULL_TASK_ID`).
const NO_TASK: &str = "00000000-0000-0000-0000-000000000000";

/// A task as a checkpoint's pending writes show it.
#[derive(Debug, Clone)]
pub struct WrittenTask {
    pub id: String,
    pub node: Option<String>,
    pub result: Option<Value>,
}

/// A write a task made against a checkpoint that has not been applied yet.
#[derive(Debug, Clone)]
pub struct PendingWrite {
    pub task_id: String,
    pub task_path: String,
    pub idx: i32,
    pub channel: String,
    pub type_: String,
    pub data: Vec<u8>,
    /// A JSON rendering of opaque `data`, given by its writer, for showing the task's result.
    pub value: Option<Value>,
}

/// A stored checkpoint with the blobs its channel versions name and its pending writes.
#[derive(Debug, Clone)]
pub struct CheckpointRecord {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub checkpoint: Value,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub blobs: Vec<Blob>,
    pub pending_writes: Vec<PendingWrite>,
}

/// A checkpoint to store.
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub checkpoint: RawJson,
    pub metadata: RawJson,
    pub blobs: Vec<Blob>,
}

impl NewCheckpoint {
    /// The bytes of its documents and blobs.
    pub fn payload_bytes(&self) -> usize {
        self.checkpoint.get().len()
            + self.metadata.get().len()
            + self
                .blobs
                .iter()
                .map(|b| {
                    b.data.as_ref().map_or(0, Vec::len) + b.value.as_ref().map_or(0, tree_bytes)
                })
                .sum::<usize>()
    }
}

impl From<&CheckpointRecord> for NewCheckpoint {
    fn from(r: &CheckpointRecord) -> NewCheckpoint {
        NewCheckpoint {
            thread_id: r.thread_id.clone(),
            checkpoint_ns: r.checkpoint_ns.clone(),
            checkpoint_id: r.checkpoint_id.clone(),
            parent_checkpoint_id: r.parent_checkpoint_id.clone(),
            checkpoint: RawJson::from_value(&r.checkpoint),
            metadata: RawJson::from_value(&r.metadata),
            blobs: r.blobs.clone(),
        }
    }
}

/// `over` on `base`, as a run's config goes on its assistant's (and on its thread's): key by
/// key, `configurable` merged key by key too. A `base` that is not an object counts as empty.
pub fn over(base: &Value, over: Option<&Value>) -> Value {
    let mut out = base.as_object().cloned().unwrap_or_default();
    for (k, v) in over.and_then(Value::as_object).into_iter().flatten() {
        match (out.get_mut(k), v) {
            (Some(Value::Object(mine)), Value::Object(theirs)) if k == "configurable" => {
                mine.extend(theirs.clone());
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// One pending write as a caller sends it: channel, type, data, and a JSON rendering of opaque
/// data when its writer gave one.
pub type RawWrite = (String, String, Vec<u8>, Option<Value>);

/// Pending writes of one task.
#[derive(Debug, Clone)]
pub struct NewWrites {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub task_id: String,
    pub task_path: String,
    /// In the task's order.
    pub writes: Vec<RawWrite>,
}

/// The fixed indexes of LangGraph's special channels; other writes use their position.
pub fn write_index(channel: &str, position: usize) -> i32 {
    match channel {
        "__error__" => -1,
        "__scheduled__" => -2,
        "__interrupt__" => -3,
        "__resume__" => -4,
        _ => position as i32,
    }
}

/// A history listing.
#[derive(Debug, Clone)]
pub struct CheckpointQuery {
    pub thread_id: String,
    /// `None` lists every namespace.
    pub checkpoint_ns: Option<String>,
    /// Only checkpoints whose metadata contains this object.
    pub metadata: Option<Value>,
    /// Only checkpoints older than this id (keyset pagination).
    pub before: Option<String>,
    pub limit: i64,
    /// The page stops growing once its checkpoints hold this many bytes (at least one row).
    pub max_bytes: usize,
}

/// An update of a thread's state: a new checkpoint on top of `checkpoint_id` (default: latest).
#[derive(Debug, Clone)]
pub struct StateUpdate {
    pub thread_id: String,
    pub values: Value,
    pub as_node: Option<String>,
    pub checkpoint_id: Option<String>,
    /// The checkpoint's `metadata.source`: `update` for a client's update, `input` and `loop`
    /// for a run's steps.
    pub source: &'static str,
    /// More checkpoint metadata (a run's `run_id`, `graph_id`, …).
    pub metadata: serde_json::Map<String, Value>,
}

/// Whether channel version `v` is newer than `seen` (none seen: any is). LangGraph's versions
/// are integers, or strings led by a zero-padded counter (`"000…3.0.42"`): they compare by that
/// counter, then as text.
fn newer(v: &Value, seen: Option<&Value>) -> bool {
    fn key(v: &Value) -> (f64, &str) {
        match v {
            Value::Number(n) => (n.as_f64().unwrap_or(0.0), ""),
            Value::String(s) => (
                s.split('.')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0.0),
                s.as_str(),
            ),
            _ => (0.0, ""),
        }
    }
    match seen {
        None | Some(Value::Null) => true,
        Some(seen) => {
            let ((a, a_text), (b, b_text)) = (key(v), key(seen));
            a > b || (a == b && a_text > b_text)
        }
    }
}

/// Channels that are LangGraph's bookkeeping, not state: `__start__`, `branch:to:agent`, …
fn is_internal_channel(name: &str) -> bool {
    name.starts_with("__") || name.contains(':')
}

impl Thread {
    /// About the bytes this thread takes in memory (more than on the wire).
    pub fn approx_bytes(&self) -> usize {
        256 + self.metadata.get().len()
            + tree_bytes(&self.config)
            + self.values.as_ref().map_or(0, tree_bytes)
            + tree_bytes(&self.interrupts)
    }
}

impl CheckpointRecord {
    /// About the bytes this checkpoint takes in memory (more than on the wire: its trees, and
    /// its blobs and writes twice, as bytes and as base64).
    pub fn approx_bytes(&self) -> usize {
        let blobs: usize = self
            .blobs
            .iter()
            .map(|b| {
                64 + b.channel.len()
                    + b.version.len()
                    + 2 * b.data.as_ref().map_or(0, Vec::len)
                    + b.value.as_ref().map_or(0, tree_bytes)
            })
            .sum();
        let writes: usize = self
            .pending_writes
            .iter()
            .map(|w| 64 + w.task_id.len() + w.channel.len() + 2 * w.data.len())
            .sum();
        256 + tree_bytes(&self.checkpoint) + tree_bytes(&self.metadata) + blobs + writes
    }

    /// Interrupts waiting on this checkpoint: `(task_id, [Interrupt])` from its JSON
    /// `__interrupt__` writes (mnemo's agent writes them; other callers' are opaque).
    pub fn interrupts(&self) -> Vec<(String, Vec<Value>)> {
        self.pending_writes
            .iter()
            .filter(|w| w.channel == "__interrupt__" && w.type_ == "json")
            .filter_map(|w| {
                let parsed: Value = serde_json::from_slice(&w.data).ok()?;
                let list = match parsed {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                Some((w.task_id.clone(), list))
            })
            .collect()
    }

    /// The tasks whose writes this checkpoint holds, in the order their writes are stored:
    /// each with its node (as its writes' `task_path` names it, LangGraph's
    /// `~__pregel_pull, <node>`; None when none does, as for mnemo's agent) and its result (its
    /// writes to the graph's state channels by channel, as JSON; None when it wrote none that
    /// renders).
    pub fn written_tasks(&self) -> Vec<WrittenTask> {
        let mut tasks: Vec<WrittenTask> = Vec::new();
        // LangGraph's writes of no task (a resume's `__resume__`) are not a task's
        for w in self.pending_writes.iter().filter(|w| w.task_id != NO_TASK) {
            let at = match tasks.iter().position(|t| t.id == w.task_id) {
                Some(at) => at,
                None => {
                    let node = w
                        .task_path
                        .strip_prefix("~__pregel_pull, ")
                        .and_then(|rest| rest.split(", ").next())
                        .map(str::to_string);
                    tasks.push(WrittenTask {
                        id: w.task_id.clone(),
                        node,
                        result: None,
                    });
                    tasks.len() - 1
                }
            };
            // LangGraph's own channels (`__interrupt__`, `branch:to:…`) are not results
            if w.channel.starts_with("__") || w.channel.contains(':') {
                continue;
            }
            let shown = if w.type_ == "json" {
                serde_json::from_slice(&w.data).ok()
            } else {
                w.value.clone()
            };
            if let Some(v) = shown {
                let result = tasks[at]
                    .result
                    .get_or_insert_with(|| Value::Object(Default::default()));
                result[w.channel.as_str()] = v;
            }
        }
        tasks
    }

    /// The nodes LangGraph runs after this checkpoint, found as LangGraph finds them without
    /// the graph at hand: a node is due when its trigger channel (`branch:to:<node>`, and
    /// `__start__` for the input) holds a value (a consumed trigger is stored `empty`) of a newer
    /// version than the node has seen (`versions_seen`). Sorted by name.
    pub fn triggered_nodes(&self) -> Vec<String> {
        let field = |name: &str| self.checkpoint.get(name).and_then(Value::as_object);
        let (versions, seen, inline) = (
            field("channel_versions"),
            field("versions_seen"),
            field("channel_values"),
        );
        let holds_value = |channel: &str| {
            inline.is_some_and(|m| m.contains_key(channel))
                || self
                    .blobs
                    .iter()
                    .any(|b| b.channel == channel && b.type_ != "empty")
        };
        let mut nodes: Vec<String> = versions
            .into_iter()
            .flatten()
            .filter_map(|(channel, version)| {
                // the input's node is triggered by its own channel
                let node = match channel.as_str() {
                    "__start__" => "__start__",
                    other => other.strip_prefix("branch:to:")?,
                };
                let last = seen
                    .and_then(|s| s.get(node))
                    .and_then(|v| v.get(channel.as_str()));
                (holds_value(channel) && newer(version, last)).then(|| node.to_string())
            })
            .collect();
        nodes.sort();
        nodes
    }

    /// The state's values: inline channel values, JSON-typed blobs, and the JSON rendering their
    /// writer gave other blobs (a Python graph's msgpack); internal channels are left out.
    pub fn values(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(inline) = self
            .checkpoint
            .get("channel_values")
            .and_then(Value::as_object)
        {
            for (k, v) in inline {
                if !is_internal_channel(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        for blob in &self.blobs {
            if is_internal_channel(&blob.channel) {
                continue;
            }
            let v = if blob.type_ == "json" {
                blob.data
                    .as_deref()
                    .and_then(|d| serde_json::from_slice(d).ok())
            } else {
                blob.value.clone()
            };
            if let Some(v) = v {
                out.insert(blob.channel.clone(), v);
            }
        }
        Value::Object(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Todo,
    Doing,
    Done,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Todo => "todo",
            TaskStatus::Doing => "doing",
            TaskStatus::Done => "done",
        }
    }
}

/// A task on a user's list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Task {
    pub task_id: String,
    pub user_id: String,
    pub title: String,
    pub notes: String,
    #[schema(value_type = TaskStatus)]
    pub status: String,
    pub due_date: Option<chrono::NaiveDate>,
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub updated_at: DateTime<Utc>,
}

/// A task to create.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub user_id: String,
    pub title: String,
    pub notes: String,
    pub status: TaskStatus,
    pub due_date: Option<chrono::NaiveDate>,
}

/// Changes to a task; `None` leaves a field as it is (`due_date: Some(None)` clears it).
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub notes: Option<String>,
    pub status: Option<TaskStatus>,
    pub due_date: Option<Option<chrono::NaiveDate>>,
}

/// One page of a user's tasks, oldest first, after the `after` cursor (a task id).
#[derive(Debug, Clone)]
pub struct TaskQuery {
    pub user_id: String,
    pub status: Option<TaskStatus>,
    pub after: Option<String>,
    pub limit: i64,
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Where a run is: waiting for its thread (`pending`), executing (`running`: together, the
/// active statuses), or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Pending,
    Running,
    Success,
    Error,
    Timeout,
    Interrupted,
}

impl RunStatus {
    /// The statuses of a run that has not ended, as stored.
    pub const ACTIVE: [&'static str; 2] = ["pending", "running"];

    const ALL: [RunStatus; 6] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Error,
        RunStatus::Timeout,
        RunStatus::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Error => "error",
            RunStatus::Timeout => "timeout",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// A stored status; `None` for a name mnemo does not write.
    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Not ended yet: pending or running.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream mode a run's stream may ask for (LangGraph's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StreamMode {
    Values,
    Updates,
    Messages,
    MessagesTuple,
    Custom,
    Events,
    Debug,
    Tasks,
    Checkpoints,
    Tools,
    Lifecycle,
}

impl StreamMode {
    const ALL: [StreamMode; 11] = [
        StreamMode::Values,
        StreamMode::Updates,
        StreamMode::Messages,
        StreamMode::MessagesTuple,
        StreamMode::Custom,
        StreamMode::Events,
        StreamMode::Debug,
        StreamMode::Tasks,
        StreamMode::Checkpoints,
        StreamMode::Tools,
        StreamMode::Lifecycle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Values => "values",
            StreamMode::Updates => "updates",
            StreamMode::Messages => "messages",
            StreamMode::MessagesTuple => "messages-tuple",
            StreamMode::Custom => "custom",
            StreamMode::Events => "events",
            StreamMode::Debug => "debug",
            StreamMode::Tasks => "tasks",
            StreamMode::Checkpoints => "checkpoints",
            StreamMode::Tools => "tools",
            StreamMode::Lifecycle => "lifecycle",
        }
    }

    pub fn parse(s: &str) -> Result<StreamMode, String> {
        StreamMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown stream_mode {s:?}"))
    }

    /// The SSE event names a run's `stream_mode` (a mode, a list of modes, or none: `values`)
    /// asks for.
    pub fn events_of(stream_mode: &Value) -> Result<Vec<&'static str>, String> {
        let asked: Vec<&str> = match stream_mode {
            Value::Null => vec!["values"],
            Value::String(m) => vec![m.as_str()],
            Value::Array(ms) if ms.iter().all(Value::is_string) => {
                ms.iter().filter_map(Value::as_str).collect()
            }
            _ => return Err("stream_mode must be a string or a list of strings".into()),
        };
        let mut events = Vec::new();
        for m in asked {
            events.extend(StreamMode::parse(m)?.events());
        }
        Ok(events)
    }

    /// The SSE event names the mode's stream carries. `custom` is accepted as LangGraph does
    /// (mnemo's graphs write no custom events); mnemo's graphs emit nothing in `events`,
    /// `debug`, `tasks`, `checkpoints`, `tools` and `lifecycle`.
    pub fn events(self) -> &'static [&'static str] {
        match self {
            StreamMode::Values => &["values"],
            StreamMode::Updates => &["updates"],
            StreamMode::MessagesTuple => &["messages"],
            StreamMode::Messages => &["messages/metadata", "messages/partial", "messages/complete"],
            StreamMode::Custom => &["custom"],
            StreamMode::Events
            | StreamMode::Debug
            | StreamMode::Tasks
            | StreamMode::Checkpoints
            | StreamMode::Tools
            | StreamMode::Lifecycle => &[],
        }
    }
}

/// What a new run does when its thread is busy (default `reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MultitaskStrategy {
    /// Refused: 409.
    Reject,
    /// Waits for its turn.
    Enqueue,
    /// Cancels the active runs (what they wrote stays), then starts.
    Interrupt,
    /// Cancels the active runs and deletes them and what they wrote, then starts.
    Rollback,
}

impl MultitaskStrategy {
    const ALL: [MultitaskStrategy; 4] = [
        MultitaskStrategy::Reject,
        MultitaskStrategy::Enqueue,
        MultitaskStrategy::Interrupt,
        MultitaskStrategy::Rollback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MultitaskStrategy::Reject => "reject",
            MultitaskStrategy::Enqueue => "enqueue",
            MultitaskStrategy::Interrupt => "interrupt",
            MultitaskStrategy::Rollback => "rollback",
        }
    }

    /// A strategy by name (`None`: the default, `reject`).
    pub fn parse(s: Option<&str>) -> Result<MultitaskStrategy, String> {
        let Some(s) = s else {
            return Ok(MultitaskStrategy::Reject);
        };
        MultitaskStrategy::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "multitask_strategy must be reject, enqueue, interrupt or rollback, not {s:?}"
                )
            })
    }
}

/// A run as the LangGraph API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Run {
    pub run_id: String,
    pub thread_id: String,
    pub assistant_id: String,
    pub status: RunStatus,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The request the run was made from.
    #[schema(value_type = Object)]
    pub kwargs: Value,
    pub multitask_strategy: MultitaskStrategy,
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub updated_at: DateTime<Utc>,
    /// The graph it runs (`None` for runs from before assistants were data).
    #[serde(skip)]
    pub graph_id: Option<String>,
}

/// An assistant: a graph with its configuration, at one of its versions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Assistant {
    pub assistant_id: String,
    pub graph_id: String,
    /// The user it belongs to (`None`: the system's or a service's, everyone's to use).
    #[serde(skip)]
    pub owner: Option<String>,
    pub version: i32,
    pub name: String,
    pub description: Option<String>,
    /// What runs of the assistant get under their own config (`configurable.system_prompt`,
    /// `configurable.model`, `configurable.temperature` tune mnemo's agent).
    #[schema(value_type = Object)]
    pub config: Value,
    #[schema(value_type = Object)]
    pub context: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    #[serde(serialize_with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ts")]
    pub updated_at: DateTime<Utc>,
}

/// An assistant to create.
#[derive(Debug, Clone)]
pub struct NewAssistant {
    pub assistant_id: String,
    pub graph_id: String,
    pub owner: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub config: Value,
    pub context: Value,
    pub metadata: Value,
    /// `if_exists: do_nothing`: an existing assistant is answered, not a conflict.
    pub do_nothing_if_exists: bool,
}

/// The fields of an assistant a change sets (the others stay; `metadata` is merged).
#[derive(Debug, Clone, Default)]
pub struct AssistantPatch {
    pub graph_id: Option<String>,
    pub config: Option<Value>,
    pub context: Option<Value>,
    pub metadata: Option<Value>,
    pub name: Option<String>,
    pub description: Option<String>,
}

/// What an assistant search is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssistantSort {
    AssistantId,
    #[default]
    CreatedAt,
    UpdatedAt,
    Name,
    GraphId,
}

/// An assistant search: what `viewer` (`None`: a service) may see, filtered, one page.
#[derive(Debug, Clone, Default)]
pub struct AssistantQuery {
    pub viewer: Option<String>,
    pub graph_id: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<Value>,
    pub sort_by: AssistantSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// A run to start on a thread.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub thread_id: String,
    pub assistant_id: String,
    pub graph_id: String,
    pub metadata: Value,
    pub kwargs: Value,
    /// Create the thread when it does not exist (`if_not_exists: "create"`).
    pub create_thread: bool,
    pub multitask_strategy: MultitaskStrategy,
    /// A user principal's id: the thread must be its (else 404), and is its when created.
    pub owner: Option<String>,
    /// Take the thread at once when it is free (the creating process has a free worker);
    /// otherwise the run is queued for any process to claim.
    pub claim: bool,
    /// The creating process, which holds the run when it takes the thread at once.
    pub holder: String,
    /// Until when the creating process holds the run (renewed while it lives).
    pub lease_expires_at: DateTime<Utc>,
    /// Runs that may wait behind a thread's active run.
    pub max_pending_on_thread: i64,
    /// Runs `owner` may have pending or running at once.
    pub max_active_for_owner: i64,
}

/// A created run: `running` when it took its thread at once, else `pending` behind `to_cancel`
/// (the runs a `interrupt`/`rollback` strategy stops) or the runs queued before it.
#[derive(Debug, Clone)]
pub struct StartedRun {
    pub run: Run,
    pub to_cancel: Vec<String>,
    pub thread_metadata: Value,
    pub thread_owner: Option<String>,
}

/// A graph a graph worker serves: what it registered, and until when a worker serves it. Read
/// from its row column by column, in this order.
#[derive(Debug, Clone, diesel::Queryable)]
pub struct WorkerGraph {
    pub graph_id: String,
    pub description: Option<String>,
    /// Its input, output, state, config and context JSON schemas, as the worker read them.
    pub schemas: Value,
    /// Its nodes and edges.
    pub drawing: Value,
    pub served_until: DateTime<Utc>,
    /// Its drawing with subgraphs expanded.
    pub drawing_xray: Option<Value>,
    /// Its subgraphs' schemas by namespace (`parent|child` for nested ones).
    pub subgraphs: Option<Value>,
    /// What its state channels hold before any write (a list reducer's `[]`), by channel.
    pub state_defaults: Option<Value>,
}

/// A run a process claimed from the queue: now `running`, held by that process.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub run: Run,
    /// How many times the run was started, this one included (more than 1: resumed after its
    /// process stopped).
    pub attempt: i32,
    pub thread_metadata: Value,
    pub thread_owner: Option<String>,
}

/// One event of a run's stream: `seq` is its SSE id.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub seq: i64,
    pub event: String,
    pub data: String,
}

// ---------------------------------------------------------------------------------------------
// API keys

/// An API key's row: who it acts as, and only the hash of the key itself.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub key_id: String,
    pub name: String,
    /// The user a user key acts as; `None` for a service key.
    pub user_id: Option<String>,
    #[serde(skip)]
    pub key_hash: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub key_id: String,
    pub name: String,
    pub user_id: Option<String>,
    pub key_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_modes_name_the_events_they_send() {
        let events_of = |m: Value| StreamMode::events_of(&m);
        assert_eq!(events_of(Value::Null).unwrap(), ["values"]);
        assert_eq!(events_of(json!("updates")).unwrap(), ["updates"]);
        assert_eq!(
            events_of(json!(["messages-tuple", "values", "debug"])).unwrap(),
            ["messages", "values"]
        );
        assert_eq!(
            events_of(json!("messages")).unwrap(),
            ["messages/metadata", "messages/partial", "messages/complete"]
        );
        assert!(events_of(json!("nope")).is_err());
        assert!(events_of(json!(["values", 3])).is_err());
        assert!(events_of(json!({"values": true})).is_err());
    }

    #[test]
    fn run_statuses_strategies_and_stream_modes_read_back_as_written() {
        for st in RunStatus::ALL {
            assert_eq!(RunStatus::parse(st.as_str()), Some(st));
            assert_eq!(serde_json::to_value(st).ok(), Some(json!(st.as_str())));
            assert_eq!(st.is_active(), RunStatus::ACTIVE.contains(&st.as_str()));
        }
        assert_eq!(RunStatus::parse("done"), None);
        for m in MultitaskStrategy::ALL {
            assert_eq!(MultitaskStrategy::parse(Some(m.as_str())), Ok(m));
            assert_eq!(serde_json::to_value(m).ok(), Some(json!(m.as_str())));
        }
        for m in StreamMode::ALL {
            assert_eq!(StreamMode::parse(m.as_str()), Ok(m));
            assert_eq!(serde_json::to_value(m).ok(), Some(json!(m.as_str())));
        }
        assert!(StreamMode::parse("messages_tuple").is_err());
        assert_eq!(
            MultitaskStrategy::parse(None),
            Ok(MultitaskStrategy::Reject)
        );
        assert!(MultitaskStrategy::parse(Some("queue")).is_err_and(|e| e.contains("enqueue")));
    }
}
