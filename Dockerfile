# syntax=docker/dockerfile:1
# Build: docker build -t scaff .
# Run:   docker run -p 8080:8080 -v scaff-data:/var/lib/scaff scaff
#        (PostgreSQL: -e SCAFF_DATABASE_URL=postgres://user:pass@host/db)

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY core/Cargo.toml core/Cargo.toml
RUN mkdir -p src core/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs core/src/lib.rs \
 && cargo build --release --locked --bin scaff || true
COPY . .
RUN touch src/main.rs src/lib.rs core/src/lib.rs \
 && cargo build --release --locked --bin scaff

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/scaff --create-home scaff
COPY --from=build /src/target/release/scaff /usr/local/bin/scaff
USER scaff
WORKDIR /var/lib/scaff
# DATABASE_URL (or SCAFF_DATABASE_URL, which wins) selects another store.
ENV SCAFF_LISTEN=0.0.0.0:8080 \
    SCAFF_LOG_FORMAT=json \
    SCAFF_SHUTDOWN_GRACE_S=8 \
    DATABASE_URL=sqlite:///var/lib/scaff/scaff.db
EXPOSE 8080
VOLUME ["/var/lib/scaff"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["scaff"]
CMD ["serve"]
