# syntax=docker/dockerfile:1.7
#
# podgate's image: one statically linked binary (musl) on a distroless base that has no
# shell, no package manager and runs as non-root. Build from the repository root:
#
#   docker build -t registry.example.com/podgate:0.1.0 .
#
# Size settings are passed as environment variables so that Cargo.toml's release profile
# (used for development and benchmarks) stays as it is. docs/OPERATIONS.md has the size
# estimate and how it was made.

FROM rust:1.95.0-alpine3.23 AS build

# musl-dev: the C runtime that ring's C and assembly parts link against statically (the
# image already has gcc). Versions come from the alpine3.23 branch the tag pins; pinning
# an exact -rN release would break the build whenever Alpine ships a security fix and
# drops the old package.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev

ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_TERM_COLOR=never \
    PODGATE_PLAYER_DIR=none

WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
# build.rs embeds the review page's player when npm is there. This image has no npm, on
# purpose: the gateway does not serve the review page (reviewers run `podgate review` on
# their own machine), so its binary carries no player and no Node.js toolchain is pulled
# into the build.
COPY web/package.json web/package-lock.json ./web/
# policy/: `podgate dev` embeds the example policies.
COPY policy ./policy
COPY src ./src

# The registry and the target directory are BuildKit caches, so a rebuild after a source
# change recompiles podgate only. The binary is copied out of the cache in the same step,
# and the build fails if it is not fully static (the runtime image has no libc).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin podgate \
    && readelf -d target/release/podgate > /tmp/dynamic \
    && if grep -q NEEDED /tmp/dynamic; then \
         echo "podgate is dynamically linked" >&2; exit 1; \
       fi \
    && cp target/release/podgate /podgate

# The runtime: distroless static ("nonroot" tag: user 65532), which holds the CA
# certificates, /etc/passwd and tzdata, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="podgate" \
      org.opencontainers.image.description="SSH front door for just-in-time Kubernetes debugging" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/podgate/podgate" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"

COPY --from=build --chown=0:0 --chmod=0555 /podgate /podgate

USER 65532:65532
# 2222: SSH (the Service maps port 22 to it); 9090: /metrics, /healthz, /livez, /readyz.
EXPOSE 2222 9090
ENTRYPOINT ["/podgate"]
CMD ["serve", "--config", "/etc/podgate/config.yaml"]
