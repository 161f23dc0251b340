# syntax=docker/dockerfile:1
# The otel-netprobe agent image (`make image` builds it with buildah; docker build works the same).
#
#   builder  the project's own toolchain set-up (`scripts/setup.sh toolchain`: rust-src for the
#            nightly, bpf-linker built against the nightly's LLVM), then `cargo build --locked`;
#            the binary gets the file capabilities it needs to run as a non-root user.
#   runtime  distroless cc (glibc, libgcc, CA certificates; no shell, no package manager), the
#            agent as user 65532.
#
# Capabilities: the binary carries cap_bpf, cap_net_admin, cap_perfmon (+ep). A non-root agent
# gets them at exec when the pod adds the same capabilities (its bounding set) and leaves
# allowPrivilegeEscalation on (no_new_privs would ignore file capabilities); the chart does both.
# Where a runtime drops file capabilities, or more capabilities are needed (SYS_RESOURCE before
# 5.11), run it as root with the capabilities instead (chart: agent.runAsRoot=true).

# Architectures: linux/amd64 only, for now. The agent itself cross-builds for aarch64 and passes
# the node lab on Debian's arm64 kernels (scripts/cross-arm64.sh; make test's kernel_arm64_*
# tests), but this builder compiles for its own platform, and the project's machines can neither
# pull an arm64 base image (no registry answers) nor run arm64 code in a RUN step: no qemu-user
# is registered (binfmt_misc is in their kernel and mountable, Debian 12 has qemu-user-static,
# but an emulated cargo build of the agent would take hours). The way to a second architecture
# that runs no arm64 code: a builder `FROM --platform=$BUILDPLATFORM` cross-compiling for
# TARGETARCH as cross-arm64.sh does, and an arm64 runtime base made from Debian's arm64 libc6,
# libgcc-s1 and ca-certificates packages unpacked with dpkg -x; not done yet (README, The image).

# Build arguments for every version (RUST_IMAGE needs rustup; a nightly is installed if absent).
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG RUST_NIGHTLY=nightly
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# setcap for the file capabilities; the C compiler for ring (TLS).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN rustup toolchain list | grep -q "^${RUST_NIGHTLY}" \
 || rustup toolchain install "${RUST_NIGHTLY}" --profile minimal --component rust-src
WORKDIR /src
# The same set-up as `make setup`, for the build only (no test backends). A build secret `cacert`
# (a CA bundle) serves networks whose TLS proxy re-signs crates.io: `make image` passes the
# machine's own trust store.
COPY scripts/setup.sh scripts/setup.sh
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=secret,id=cacert,required=false \
    if [ -s /run/secrets/cacert ]; then export CARGO_HTTP_CAINFO=/run/secrets/cacert; fi \
 && bash scripts/setup.sh toolchain
COPY Cargo.toml Cargo.lock ./
COPY netprobe-ebpf netprobe-ebpf
COPY otel-netprobe otel-netprobe
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    --mount=type=secret,id=cacert,required=false \
    if [ -s /run/secrets/cacert ]; then export CARGO_HTTP_CAINFO=/run/secrets/cacert; fi \
 && cargo build --release --locked -p otel-netprobe --bin otel-netprobe \
 && install -D -m 0755 target/release/otel-netprobe /out/otel-netprobe \
 && /out/otel-netprobe --version \
 && setcap cap_bpf,cap_net_admin,cap_perfmon=ep /out/otel-netprobe

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="otel-netprobe" \
      org.opencontainers.image.description="eBPF network telemetry for Kubernetes: exact per-flow counts from XDP/TC, exported as OpenTelemetry metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://example.invalid/otel-netprobe"
COPY --from=builder /out/otel-netprobe /usr/local/bin/otel-netprobe
USER 65532:65532
# /metrics, /api/v1/summary, /healthz (http.listen).
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/otel-netprobe"]
CMD ["run"]
