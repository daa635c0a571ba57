# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a slim Debian
# as a non-root user.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a change in src/ does not rebuild them.
# The workspace's other members (the simulator, the benchmark) are small and
# must be present for cargo to read the workspace; only the service is built.
COPY Cargo.toml Cargo.lock ./
# .cargo/config.toml makes the build use the committed query data in .sqlx/
# (SQLX_OFFLINE): no database is needed to compile.
COPY .cargo ./.cargo
COPY crates ./crates
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked -p amohook && rm -rf src
COPY src ./src
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY templates ./templates
COPY assets ./assets
COPY config ./config
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p amohook --bin amohook

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app amohook \
    && mkdir -p /app/data && chown amohook /app/data
WORKDIR /app
COPY --from=build /src/target/release/amohook /usr/local/bin/amohook
COPY config ./config
USER amohook
ENV AMOHOOK_HTTP__LISTEN=0.0.0.0:8080 \
    AMOHOOK_SECURITY__KEY_FILE=/app/data/amohook.key
# Only used when security.encryption_key is not set: keep it on a volume.
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["amohook"]
CMD ["serve"]
