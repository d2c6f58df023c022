//! JSON predicates, the one place where the two backends need different SQL: metadata
//! containment (Postgres `@>`, spelled out with `json_extract` on SQLite) and the store's field
//! filters. Ordering comparisons are typed on both: numbers as numbers (9 < 10), strings as
//! strings (bytewise), and a field of another type never matches. Every value is bound, never
//! spliced into the SQL, but for one: a store prefix on SQLite, spliced as a hex literal so the
//! planner can weigh it (see `sqlite::subtree`). Column names are constants of this crate.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::expression::{
    AppearsOnTable, BoxableExpression, Expression, SelectableExpression, ValidGrouping,
    is_aggregate,
};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Bool;

pub type Pred<QS, DB> = Box<dyn BoxableExpression<QS, DB, SqlType = Bool>>;

/// The conjunction of predicates, written in a loop. Diesel's `.and()` (and each `.filter()`
/// on a boxed query) nests one level per condition, and building or walking that tree recurses
/// as deep as a filter is wide: thousands of conditions overflowed the stack.
pub struct AllOf<QS, DB>(pub Vec<Pred<QS, DB>>);

impl<QS, DB> Expression for AllOf<QS, DB> {
    type SqlType = Bool;
}

impl<QS, DB> AppearsOnTable<QS> for AllOf<QS, DB> {}

impl<QS, DB> SelectableExpression<QS> for AllOf<QS, DB> {}

impl<QS, DB> ValidGrouping<()> for AllOf<QS, DB> {
    type IsAggregate = is_aggregate::Never;
}

impl<QS, DB> QueryId for AllOf<QS, DB> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS, DB: Backend> QueryFragment<DB> for AllOf<QS, DB> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if self.0.is_empty() {
            out.push_sql("1 = 1");
        }
        for (i, p) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { " AND (" });
            p.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        Ok(())
    }
}

pub mod pg {
    use diesel::dsl::sql;
    use diesel::pg::Pg;
    use diesel::sql_types::{Bool, Jsonb, Text};
    use serde_json::Value;

    use crate::model::{FieldFilter, FilterOp};

    type Pred<QS> = super::Pred<QS, Pg>;

    /// Tells every mnemo on this database that a thread was freed or its queue moved (the
    /// payload is the thread id) and, when runs wait on the thread, that the run queue may have
    /// work (`mnemo_queue`); sent when the transaction commits.
    pub const NOTIFY_THREAD: Option<&str> = Some(
        "WITH queued AS (SELECT pg_notify('mnemo_queue', '') FROM runs \
         WHERE thread_id = $1 AND status = 'pending' LIMIT 1) \
         SELECT pg_notify('mnemo_threads', $1), (SELECT count(*) FROM queued)",
    );

    /// Tells every mnemo on this database that the run queue has a run to claim.
    pub const NOTIFY_QUEUE: Option<&str> = Some("SELECT pg_notify('mnemo_queue', '')");

    /// The runs that may be claimed now, oldest first, at most `$1`, of the graphs `$2` names
    /// (`''`: runs from before runs named their graph): the oldest pending run of each thread on
    /// which none runs. Locked for the claiming transaction; rows another transaction claims are
    /// skipped, not waited for.
    pub const CLAIMABLE_RUNS: &str = "SELECT run_id, thread_id FROM runs AS queued \
        WHERE status = 'pending' AND COALESCE(graph_id, '') = ANY($2) AND NOT EXISTS \
        (SELECT 1 FROM runs AS other WHERE other.thread_id = queued.thread_id \
        AND (other.status = 'running' OR (other.status = 'pending' AND other.run_id < queued.run_id))) \
        ORDER BY run_id LIMIT $1 FOR UPDATE SKIP LOCKED";

    /// Tells the streams following a run through other processes that its events are stored.
    pub const NOTIFY_RUN_EVENTS: Option<&str> = Some("SELECT pg_notify('mnemo_runs', $1)");

    /// A list of graph ids, as [`CLAIMABLE_RUNS`] reads it.
    pub type GraphList = diesel::sql_types::Array<Text>;

    pub fn graph_list(ids: &[String]) -> Vec<String> {
        ids.to_vec()
    }

    /// A transaction's first statement when it reads before it writes (nothing on Postgres).
    pub const TAKE_WRITE_LOCK: Option<&str> = None;

    /// Store prefixes strictly below `prefix` (`a.b` → `a.b.…`): `LIKE`, which the
    /// `text_pattern_ops` index serves whatever the database's collation.
    pub fn below<QS: 'static>(prefix: &str) -> Pred<QS> {
        Box::new(
            sql::<Bool>("prefix LIKE ")
                .bind::<Text, _>(like_below(prefix))
                .sql(" ESCAPE '\\'"),
        )
    }

    /// Store prefixes at or below `prefix`.
    pub fn subtree<QS: 'static>(prefix: &str) -> Pred<QS> {
        Box::new(
            sql::<Bool>("(prefix = ")
                .bind::<Text, _>(prefix.to_string())
                .sql(" OR prefix LIKE ")
                .bind::<Text, _>(like_below(prefix))
                .sql(" ESCAPE '\\')"),
        )
    }

    /// The `LIKE` pattern of the prefixes strictly below `prefix`.
    fn like_below(prefix: &str) -> String {
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}.%")
    }

    /// `column @> filter` (a list, to match the SQLite spelling).
    /// Rows whose `metadata.run_id` is one of `ids` (the `checkpoints_run_id_idx` expression).
    pub fn run_id_in<QS: 'static>(ids: &[String]) -> Pred<QS> {
        Box::new(
            sql::<Bool>("(metadata ->> 'run_id') = ANY(")
                .bind::<diesel::sql_types::Array<Text>, _>(ids.to_vec())
                .sql(")"),
        )
    }

    pub fn contains<QS: 'static>(column: &'static str, filter: &Value) -> Vec<Pred<QS>> {
        vec![Box::new(
            sql::<Bool>(&format!("{column} @> ")).bind::<Jsonb, _>(filter.clone()),
        )]
    }

    /// A filter on a top-level field of the store's `value` column.
    pub fn field<QS: 'static>(f: &FieldFilter) -> Pred<QS> {
        let key = f.field.clone();
        match (f.op, &f.value) {
            (FilterOp::Eq, v) => Box::new(
                sql::<Bool>("(value -> ")
                    .bind::<Text, _>(key)
                    .sql(") = ")
                    .bind::<Jsonb, _>(v.clone()),
            ),
            (FilterOp::Ne, v) => Box::new(
                sql::<Bool>("(value -> ")
                    .bind::<Text, _>(key)
                    .sql(") IS DISTINCT FROM ")
                    .bind::<Jsonb, _>(v.clone()),
            ),
            (op, Value::Number(n)) => Box::new(
                sql::<Bool>("(CASE WHEN jsonb_typeof(value -> ")
                    .bind::<Text, _>(key.clone())
                    .sql(") = 'number' THEN (value -> ")
                    .bind::<Text, _>(key)
                    .sql(&format!(")::numeric {} CAST(", op.sql()))
                    .bind::<Text, _>(n.to_string())
                    .sql(" AS numeric) ELSE false END)"),
            ),
            (op, v) => Box::new(
                sql::<Bool>("(CASE WHEN jsonb_typeof(value -> ")
                    .bind::<Text, _>(key.clone())
                    .sql(") = 'string' THEN (value ->> ")
                    .bind::<Text, _>(key)
                    .sql(&format!(") COLLATE \"C\" {} ", op.sql()))
                    .bind::<Text, _>(v.as_str().unwrap_or_default().to_string())
                    .sql(" ELSE false END)"),
            ),
        }
    }
}

pub mod sqlite {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Bool, Double, Text};
    use diesel::sqlite::Sqlite;
    use serde_json::Value;

    use crate::model::{FieldFilter, FilterOp};

    type Pred<QS> = super::Pred<QS, Sqlite>;

    /// SQLite serves one process: its runs are woken in process.
    pub const NOTIFY_THREAD: Option<&str> = None;
    pub const NOTIFY_QUEUE: Option<&str> = None;

    /// The runs that may be claimed now (one process: no row locks to skip); `?2` is a JSON
    /// list of graph ids.
    pub const CLAIMABLE_RUNS: &str = "SELECT run_id, thread_id FROM runs AS queued \
        WHERE status = 'pending' AND COALESCE(graph_id, '') IN (SELECT value FROM json_each(?2)) \
        AND NOT EXISTS \
        (SELECT 1 FROM runs AS other WHERE other.thread_id = queued.thread_id \
        AND (other.status = 'running' OR (other.status = 'pending' AND other.run_id < queued.run_id))) \
        ORDER BY run_id LIMIT ?1";

    pub const NOTIFY_RUN_EVENTS: Option<&str> = None;

    /// A list of graph ids, as [`CLAIMABLE_RUNS`] reads it: JSON text.
    pub type GraphList = Text;

    pub fn graph_list(ids: &[String]) -> String {
        serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
    }

    /// A write first, so that a transaction that reads before it writes takes SQLite's write
    /// lock at once (upgrading a read later could fail at once, without waiting).
    pub const TAKE_WRITE_LOCK: Option<&str> =
        Some("UPDATE runs SET status = status WHERE run_id = ''");

    /// Store prefixes strictly below `prefix` (`a.b` → `a.b.…`): a range on the primary key
    /// (bytewise, `.` + 1 = `/`), which SQLite's planner serves from the index where it would
    /// not for a `LIKE`.
    pub fn below<QS: 'static>(prefix: &str) -> Pred<QS> {
        Box::new(Spliced(range_below(prefix)))
    }

    /// Store prefixes at or below `prefix`, for a search: the one statement whose plan
    /// depends on its value. A prefix that holds most of the store is best read newest first
    /// along `updated_at`; a small namespace by its range of the primary key, then sorted. A
    /// bound value is hidden from the planner (every connection plans with QPSG, see
    /// `pool::sqlite_plans_once`), so the prefix is spliced in as literals it can weigh.
    pub fn subtree<QS: 'static>(prefix: &str) -> Pred<QS> {
        Box::new(Spliced(format!(
            "(prefix = {} OR {})",
            text_literal(prefix),
            range_below(prefix)
        )))
    }

    fn range_below(prefix: &str) -> String {
        format!(
            "(prefix > {} AND prefix < {})",
            text_literal(&format!("{prefix}.")),
            text_literal(&format!("{prefix}/"))
        )
    }

    /// `text` as a SQL literal: its UTF-8 bytes in hex, read back as text. Hex digits cannot
    /// close the literal or hold a NUL that would cut the statement short.
    fn text_literal(text: &str) -> String {
        use std::fmt::Write;
        let mut hex = String::with_capacity(2 * text.len() + 20);
        hex.push_str("CAST(X'");
        for b in text.bytes() {
            // writing to a String cannot fail
            let _ = write!(hex, "{b:02x}");
        }
        hex.push_str("' AS TEXT)");
        hex
    }

    /// A condition spliced into the statement whole. Never cached: its text is new for every
    /// value, and a cache keyed by it would grow with every prefix a caller names.
    struct Spliced(String);

    impl diesel::expression::Expression for Spliced {
        type SqlType = Bool;
    }

    impl<QS> diesel::expression::AppearsOnTable<QS> for Spliced {}

    impl<QS> diesel::expression::SelectableExpression<QS> for Spliced {}

    impl diesel::expression::ValidGrouping<()> for Spliced {
        type IsAggregate = diesel::expression::is_aggregate::Never;
    }

    impl diesel::query_builder::QueryId for Spliced {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl diesel::query_builder::QueryFragment<Sqlite> for Spliced {
        fn walk_ast<'b>(
            &'b self,
            mut out: diesel::query_builder::AstPass<'_, 'b, Sqlite>,
        ) -> diesel::QueryResult<()> {
            out.unsafe_to_cache_prepared();
            out.push_sql(&self.0);
            Ok(())
        }
    }

    /// A JSON path naming nested object keys: `$."a"."b"`.
    /// SQLite's quoted labels cannot hold a `"`: such a key becomes a path no document has, so
    /// it matches nothing.
    fn path(keys: &[&str]) -> String {
        let mut p = String::from("$");
        for k in keys {
            if k.contains('"') {
                return "$.\"\u{1}\".\"\u{1}\"".into();
            }
            p.push_str(&format!(".\"{k}\""));
        }
        p
    }

    /// `json_extract(column, path)` equals the JSON value `v` (numbers equal across int/real).
    ///
    /// A string or a number compares the extracted value first and checks its JSON type only
    /// where it is equal (the text `"1"` and the number `1` extract alike): most rows fail the
    /// first test, and each row's document is looked at once rather than twice.
    fn equals<QS: 'static>(column: &str, path: String, v: &Value) -> Pred<QS> {
        let extracted = sql::<Bool>(&format!("COALESCE(json_extract({column}, "))
            .bind::<Text, _>(path.clone())
            .sql(") = ");
        // the extracted value compared, then its JSON type checked
        macro_rules! of_type {
            ($compared:expr, $types:literal) => {
                Box::new(
                    $compared
                        .sql(&format!(" AND json_type({column}, "))
                        .bind::<Text, _>(path)
                        .sql(concat!(") IN ", $types, ", 0)")),
                )
            };
        }
        match v {
            Value::String(text) => of_type!(extracted.bind::<Text, _>(text.clone()), "('text')"),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => of_type!(extracted.bind::<BigInt, _>(i), "('integer', 'real')"),
                (None, Some(f)) if n.is_f64() => {
                    of_type!(extracted.bind::<Double, _>(f), "('integer', 'real')")
                }
                _ => any_equal(column, path, v),
            },
            _ => any_equal(column, path, v),
        }
    }

    /// [`equals`] for any JSON value: same JSON type (integer and real alike), then same value.
    fn any_equal<QS: 'static>(column: &str, path: String, v: &Value) -> Pred<QS> {
        let json = v.to_string();
        Box::new(
            sql::<Bool>(&format!("COALESCE(replace(json_type({column}, "))
                .bind::<Text, _>(path.clone())
                .sql("), 'integer', 'real') = replace(json_type(")
                .bind::<Text, _>(json.clone())
                .sql(&format!(
                    "), 'integer', 'real') AND json_extract({column}, "
                ))
                .bind::<Text, _>(path)
                // IS, not =: JSON null extracts as SQL NULL, and `{k: null}` must match it
                .sql(") IS json_extract(")
                .bind::<Text, _>(json)
                .sql(", '$'), 0)"),
        )
    }

    fn has_type<QS: 'static>(column: &str, path: String, ty: &'static str) -> Pred<QS> {
        Box::new(
            sql::<Bool>(&format!("COALESCE(json_type({column}, "))
                .bind::<Text, _>(path)
                .sql(&format!(") = '{ty}', 0)")),
        )
    }

    fn array_has<QS: 'static>(column: &str, path: String, element: &Value) -> Pred<QS> {
        let json = element.to_string();
        Box::new(
            sql::<Bool>(&format!("EXISTS (SELECT 1 FROM json_each({column}, "))
                .bind::<Text, _>(path)
                .sql(") AS e WHERE replace(e.type, 'integer', 'real') = replace(json_type(")
                .bind::<Text, _>(json.clone())
                .sql("), 'integer', 'real') AND e.atom IS json_extract(")
                .bind::<Text, _>(json.clone())
                .sql(", '$') OR (e.atom IS NULL AND e.value = json(")
                .bind::<Text, _>(json)
                .sql(")))"),
        )
    }

    /// Postgres `column @> filter`, as a conjunction over the filter's leaves.
    /// Rows whose `metadata.run_id` is one of `ids` (the `checkpoints_run_id_idx` expression).
    pub fn run_id_in<QS: 'static>(ids: &[String]) -> Pred<QS> {
        Box::new(
            sql::<Bool>("json_extract(metadata, '$.run_id') IN (SELECT value FROM json_each(")
                .bind::<Text, _>(serde_json::json!(ids).to_string())
                .sql("))"),
        )
    }

    pub fn contains<QS: 'static>(column: &'static str, filter: &Value) -> Vec<Pred<QS>> {
        let mut out = Vec::new();
        leaves(column, &mut Vec::new(), filter, &mut out);
        out
    }

    fn leaves<QS: 'static>(
        column: &'static str,
        keys: &mut Vec<String>,
        v: &Value,
        out: &mut Vec<Pred<QS>>,
    ) {
        let here = || path(&keys.iter().map(String::as_str).collect::<Vec<_>>());
        match v {
            Value::Object(o) if o.is_empty() => out.push(has_type(column, here(), "object")),
            Value::Object(o) => {
                for (k, child) in o {
                    keys.push(k.clone());
                    leaves(column, keys, child, out);
                    keys.pop();
                }
            }
            Value::Array(items) => {
                out.push(has_type(column, here(), "array"));
                for item in items {
                    out.push(array_has(column, here(), item));
                }
            }
            scalar => out.push(equals(column, here(), scalar)),
        }
    }

    /// A filter on a top-level field of the store's `value` column.
    pub fn field<QS: 'static>(f: &FieldFilter) -> Pred<QS> {
        let p = path(&[f.field.as_str()]);
        match (f.op, &f.value) {
            (FilterOp::Eq, v) => equals("value", p, v),
            (FilterOp::Ne, v) => Box::new(diesel::dsl::not(equals::<QS>("value", p, v))),
            (op, Value::Number(n)) => Box::new(
                sql::<Bool>("(json_type(value, ")
                    .bind::<Text, _>(p.clone())
                    .sql(") IN ('integer', 'real') AND json_extract(value, ")
                    .bind::<Text, _>(p)
                    .sql(&format!(") {} ", op.sql()))
                    .bind::<Double, _>(n.as_f64().unwrap_or_default())
                    .sql(")"),
            ),
            (op, v) => Box::new(
                sql::<Bool>("(json_type(value, ")
                    .bind::<Text, _>(p.clone())
                    .sql(") = 'text' AND json_extract(value, ")
                    .bind::<Text, _>(p)
                    .sql(&format!(") {} ", op.sql()))
                    .bind::<Text, _>(v.as_str().unwrap_or_default().to_string())
                    .sql(")"),
            ),
        }
    }
}
