# recoup — multi-stage build: a release binary on a small Debian runtime, run as a non-root user.
# Not built in CI (no Docker engine there); `docker build -t recoup .` builds it.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin recoup

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin recoup
WORKDIR /app
COPY --from=build /src/target/release/recoup /usr/local/bin/recoup
COPY config ./config
COPY fixtures ./fixtures
USER recoup
ENV RECOUP_LISTEN=0.0.0.0:8080 \
    RECOUP_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["recoup"]
CMD ["serve"]
