# syntax=docker/dockerfile:1
#
# The Portcullis image: the one binary on distroless (glibc, no shell), run as the
# non-root user 65532, the chart's runAsUser. Build from the repository root:
#
#   docker build --build-arg VERSION=0.1.0 -t portcullis:0.1.0 .
#
# The image's entrypoint is the binary: the chart passes `serve ...`, and
# `portcullis echo --listen 0.0.0.0:8080` makes a test backend from the same image.

# Build stage: a release build of the one binary, exactly as locked in Cargo.lock.
# Debian bookworm, to match the glibc of the distroless runtime below.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY controller ./controller
COPY dataplane ./dataplane
# The registry and target caches survive between builds (BuildKit); the binary is
# copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && install -D -m 0755 target/release/portcullis /out/portcullis

# Runtime stage: glibc, libgcc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="A Kubernetes ingress controller built around TLS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/portcullis-ingress/portcullis" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/portcullis /usr/local/bin/portcullis
# distroless's "nonroot" user, numerically, so that runAsNonRoot can verify it.
USER 65532:65532
# HTTP, HTTPS and the admin port (health, metrics): the binary's defaults.
EXPOSE 80 443 10254
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
