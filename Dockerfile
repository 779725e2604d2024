# syntax=docker/dockerfile:1
# Gatehouse container image: the proxy `gatehouse` (the entrypoint) and the test backend
# `gatehouse-backend` (docker-compose/ and the Helm chart run the demo backends from this image),
# on distroless/cc: glibc and CA certificates, no shell, no package manager; runs as uid 10001.
#
#   docker build -t gatehouse:local .
#   docker run --rm --read-only --tmpfs /tmp -p 8080:8080 -e GATEHOUSE_JWT_SECRET="$(openssl rand -hex 32)" gatehouse:local
#
# Config: /etc/gatehouse/gatehouse.yaml, by default the control plane only (accounts, login,
# /metrics) with accounts in SQLite on the data volume; mount your own config over it (compose
# does) or pass `serve --config PATH`. Check one first: `docker run … gatehouse:local check --config PATH`.
# State: only /var/lib/gatehouse (a volume, owned by 10001), so the root filesystem can be
# read-only. Health: `gatehouse probe URL`, which needs no curl.
# Checked by scripts/validate-compose (hadolint).

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first, built against stub sources: this layer is reused until Cargo.toml or
# Cargo.lock change, so an edit of the code recompiles only the two workspace crates.
COPY Cargo.toml Cargo.lock build.rs ./
COPY backends/Cargo.toml backends/
RUN mkdir -p src backends/src migrations \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > backends/src/main.rs \
    && touch src/lib.rs backends/src/lib.rs \
    && cargo build --release --locked --workspace --bins \
    && rm -rf src backends/src

COPY migrations migrations
COPY src src
COPY backends/src backends/src
# The stubs were compiled after these files were last modified: touch the crate roots so cargo
# rebuilds the real code instead of keeping the stub binaries.
# The default config is written and checked by the binary here, so the image never ships one
# it rejects.
RUN touch src/main.rs src/lib.rs backends/src/main.rs backends/src/lib.rs \
    && cargo build --release --locked --workspace --bins \
    && mkdir -p /out/bin /out/etc /out/data \
    && cp target/release/gatehouse target/release/gatehouse-backend /out/bin/ \
    && printf '%s\n' \
        '# Default config of the Gatehouse image: the control plane only (register, login, accounts,' \
        '# /metrics, /health, /ready). Mount your own at /etc/gatehouse/gatehouse.yaml to add services.' \
        'listen: 0.0.0.0:8080' \
        'database:' \
        '  url: sqlite:///var/lib/gatehouse/gatehouse.db' \
        'services: []' \
        > /out/etc/gatehouse.yaml \
    && /out/bin/gatehouse check --config /out/etc/gatehouse.yaml \
    && /out/bin/gatehouse-backend --help > /dev/null

# ---------------------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/etc/gatehouse.yaml /etc/gatehouse/gatehouse.yaml
# Created by this COPY, so owned by the runtime user (a fresh volume copies its ownership).
COPY --from=build --chown=10001:10001 /out/data/ /var/lib/gatehouse/

# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# A relative sqlite:// path in a mounted config lands on the volume too.
WORKDIR /var/lib/gatehouse
VOLUME ["/var/lib/gatehouse"]

ENV RUST_LOG=info
# The allocator's settings (no eager arena commit, no transparent huge pages) are the binary's
# own defaults, so nothing is set here for them.
# 8080: `listen` (proxy and control plane); 9090: `admin_listen` when a config sets it.
EXPOSE 8080 9090

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["gatehouse", "probe", "http://127.0.0.1:8080/health"]

ENTRYPOINT ["gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
