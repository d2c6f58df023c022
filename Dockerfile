# mnemo: multi-stage build. Dependencies are compiled in their own layer, so a source change
# rebuilds only mnemo itself.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# diesel-async, patched for PgBouncer's transaction pooling (vendor/diesel-async/PATCHED.md)
COPY vendor vendor
RUN mkdir -p src tests/api \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/api/main.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
# the CA roots the `openai` model verifies its endpoint's certificate with
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/mnemo mnemo
COPY --from=build /src/target/release/mnemo /usr/local/bin/mnemo
USER mnemo
WORKDIR /var/lib/mnemo
# DATABASE_URL comes from the environment: postgres://… in production; the default keeps an
# embedded SQLite file in the container's working directory. The API needs a key: make one with
# `docker exec <container> mnemo keys create --user <id>` (or set MNEMO_AUTH=jwt and a secret).
ENV MNEMO_HOST=0.0.0.0 \
    MNEMO_PORT=2024 \
    MNEMO_AUTH=api_key \
    DATABASE_URL=sqlite:///var/lib/mnemo/mnemo.db \
    RUST_LOG=info
EXPOSE 2024
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["mnemo", "healthcheck"]
ENTRYPOINT ["mnemo"]
CMD ["serve"]
