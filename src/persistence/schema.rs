//! Table definitions for both backends, kept in step with `migrations/postgres` and
//! `migrations/sqlite` (the shape `diesel print-schema` gives, with SQLite's JSON and timestamp
//! columns typed as `Json` and `TimestamptzSqlite`). Queries are written once against either
//! module through `with_conn!`.

pub mod pg {
    diesel::table! {
        threads (thread_id) {
            thread_id -> Text,
            metadata -> Jsonb,
            status -> Text,
            config -> Jsonb,
            state_values -> Nullable<Jsonb>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            state_updated_at -> Timestamptz,
            owner -> Nullable<Text>,
        }
    }

    diesel::table! {
        api_keys (key_id) {
            key_id -> Text,
            name -> Text,
            user_id -> Nullable<Text>,
            key_hash -> Text,
            created_at -> Timestamptz,
            last_used_at -> Nullable<Timestamptz>,
            expires_at -> Nullable<Timestamptz>,
            revoked_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        checkpoints (thread_id, checkpoint_ns, checkpoint_id) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            checkpoint_id -> Text,
            parent_checkpoint_id -> Nullable<Text>,
            checkpoint -> Jsonb,
            metadata -> Jsonb,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        checkpoint_blobs (thread_id, checkpoint_ns, channel, version) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            channel -> Text,
            version -> Text,
            #[sql_name = "type"]
            type_ -> Text,
            blob -> Nullable<Binary>,
            value -> Nullable<Jsonb>,
        }
    }

    diesel::table! {
        checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            checkpoint_id -> Text,
            task_id -> Text,
            idx -> Integer,
            channel -> Text,
            #[sql_name = "type"]
            type_ -> Text,
            blob -> Binary,
            task_path -> Text,
            value -> Nullable<Jsonb>,
        }
    }

    diesel::table! {
        store (prefix, key) {
            prefix -> Text,
            key -> Text,
            value -> Jsonb,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            expires_at -> Nullable<Timestamptz>,
            ttl_minutes -> Nullable<Double>,
        }
    }

    diesel::table! {
        tasks (task_id) {
            task_id -> Text,
            user_id -> Text,
            title -> Text,
            notes -> Text,
            status -> Text,
            due_date -> Nullable<Date>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        runs (run_id) {
            run_id -> Text,
            thread_id -> Text,
            assistant_id -> Text,
            status -> Text,
            metadata -> Jsonb,
            kwargs -> Jsonb,
            multitask_strategy -> Text,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            lease_expires_at -> Nullable<Timestamptz>,
            attempt -> Integer,
            holder -> Nullable<Text>,
            graph_id -> Nullable<Text>,
        }
    }

    diesel::table! {
        worker_graphs (graph_id) {
            graph_id -> Text,
            description -> Nullable<Text>,
            schemas -> Jsonb,
            drawing -> Jsonb,
            served_until -> Timestamptz,
            drawing_xray -> Nullable<Jsonb>,
            subgraphs -> Nullable<Jsonb>,
            state_defaults -> Nullable<Jsonb>,
        }
    }

    diesel::table! {
        assistants (assistant_id) {
            assistant_id -> Text,
            graph_id -> Text,
            owner -> Nullable<Text>,
            version -> Integer,
            name -> Text,
            description -> Nullable<Text>,
            config -> Jsonb,
            context -> Jsonb,
            metadata -> Jsonb,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
        }
    }

    diesel::table! {
        assistant_versions (assistant_id, version) {
            assistant_id -> Text,
            version -> Integer,
            graph_id -> Text,
            name -> Text,
            description -> Nullable<Text>,
            config -> Jsonb,
            context -> Jsonb,
            metadata -> Jsonb,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        run_events (run_id, seq) {
            run_id -> Text,
            seq -> BigInt,
            event -> Text,
            data -> Text,
        }
    }

    diesel::joinable!(checkpoints -> threads (thread_id));
    diesel::joinable!(runs -> threads (thread_id));
    diesel::allow_tables_to_appear_in_same_query!(
        threads,
        runs,
        checkpoints,
        checkpoint_blobs,
        checkpoint_writes,
        store
    );
}

pub mod sqlite {
    diesel::table! {
        threads (thread_id) {
            thread_id -> Text,
            metadata -> Json,
            status -> Text,
            config -> Json,
            state_values -> Nullable<Json>,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
            state_updated_at -> TimestamptzSqlite,
            owner -> Nullable<Text>,
        }
    }

    diesel::table! {
        api_keys (key_id) {
            key_id -> Text,
            name -> Text,
            user_id -> Nullable<Text>,
            key_hash -> Text,
            created_at -> TimestamptzSqlite,
            last_used_at -> Nullable<TimestamptzSqlite>,
            expires_at -> Nullable<TimestamptzSqlite>,
            revoked_at -> Nullable<TimestamptzSqlite>,
        }
    }

    diesel::table! {
        checkpoints (thread_id, checkpoint_ns, checkpoint_id) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            checkpoint_id -> Text,
            parent_checkpoint_id -> Nullable<Text>,
            checkpoint -> Json,
            metadata -> Json,
            created_at -> TimestamptzSqlite,
        }
    }

    diesel::table! {
        checkpoint_blobs (thread_id, checkpoint_ns, channel, version) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            channel -> Text,
            version -> Text,
            #[sql_name = "type"]
            type_ -> Text,
            blob -> Nullable<Binary>,
            value -> Nullable<Json>,
        }
    }

    diesel::table! {
        checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {
            thread_id -> Text,
            checkpoint_ns -> Text,
            checkpoint_id -> Text,
            task_id -> Text,
            idx -> Integer,
            channel -> Text,
            #[sql_name = "type"]
            type_ -> Text,
            blob -> Binary,
            task_path -> Text,
            value -> Nullable<Json>,
        }
    }

    diesel::table! {
        store (prefix, key) {
            prefix -> Text,
            key -> Text,
            value -> Json,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
            expires_at -> Nullable<TimestamptzSqlite>,
            ttl_minutes -> Nullable<Double>,
        }
    }

    diesel::table! {
        tasks (task_id) {
            task_id -> Text,
            user_id -> Text,
            title -> Text,
            notes -> Text,
            status -> Text,
            due_date -> Nullable<Date>,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
        }
    }

    diesel::table! {
        runs (run_id) {
            run_id -> Text,
            thread_id -> Text,
            assistant_id -> Text,
            status -> Text,
            metadata -> Json,
            kwargs -> Json,
            multitask_strategy -> Text,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
            lease_expires_at -> Nullable<TimestamptzSqlite>,
            attempt -> Integer,
            holder -> Nullable<Text>,
            graph_id -> Nullable<Text>,
        }
    }

    diesel::table! {
        worker_graphs (graph_id) {
            graph_id -> Text,
            description -> Nullable<Text>,
            schemas -> Json,
            drawing -> Json,
            served_until -> TimestamptzSqlite,
            drawing_xray -> Nullable<Json>,
            subgraphs -> Nullable<Json>,
            state_defaults -> Nullable<Json>,
        }
    }

    diesel::table! {
        assistants (assistant_id) {
            assistant_id -> Text,
            graph_id -> Text,
            owner -> Nullable<Text>,
            version -> Integer,
            name -> Text,
            description -> Nullable<Text>,
            config -> Json,
            context -> Json,
            metadata -> Json,
            created_at -> TimestamptzSqlite,
            updated_at -> TimestamptzSqlite,
        }
    }

    diesel::table! {
        assistant_versions (assistant_id, version) {
            assistant_id -> Text,
            version -> Integer,
            graph_id -> Text,
            name -> Text,
            description -> Nullable<Text>,
            config -> Json,
            context -> Json,
            metadata -> Json,
            created_at -> TimestamptzSqlite,
        }
    }

    diesel::table! {
        run_events (run_id, seq) {
            run_id -> Text,
            seq -> BigInt,
            event -> Text,
            data -> Text,
        }
    }

    diesel::joinable!(checkpoints -> threads (thread_id));
    diesel::joinable!(runs -> threads (thread_id));
    diesel::allow_tables_to_appear_in_same_query!(
        threads,
        runs,
        checkpoints,
        checkpoint_blobs,
        checkpoint_writes,
        store
    );
}
