# otel-netprobe entry points. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
CARGO ?= cargo
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: setup build run demo test lint chart-files unit-test kernel-test cross-arm64 test-arm64 fuzz bench image deploy clean

## setup: install (idempotently) everything the build, tests, demo and bench need
setup:
	@bash scripts/timed.sh setup bash scripts/setup.sh

## build: release build of the agent (the eBPF object is built by its build.rs)
build: setup
	$(CARGO) build --release --locked -p otel-netprobe

## run: run the agent on this machine's interfaces (root; Ctrl-C to stop)
run: build
	./target/release/otel-netprobe run

## demo: a simulated Kubernetes node in network namespaces, named by the real kube-apiserver, real
## traffic, real counts; the agent pushes OTLP straight into VictoriaMetrics, or with PIPELINE=collector through the real
## OpenTelemetry Collector into Prometheus (what a cluster install runs)
PIPELINE ?= direct
demo: build
	$(CARGO) build --release --locked -p otel-netprobe --example demo-cluster
	PIPELINE=$(PIPELINE) bash scripts/demo.sh ./target/release/otel-netprobe ./target/release/examples/demo-cluster

## lint: rustfmt, and clippy with -D warnings on the user-space and eBPF crates
lint: setup
	@CARGO=$(CARGO) bash scripts/timed.sh lint bash scripts/lint.sh

## test: lint, unit tests, the real-kernel tests (root: they build namespace labs) and a
## FUZZ_TEST_SECONDS (30 s) run of each fuzz target, built quick (unoptimised, no sanitizer:
## scripts/fuzz.sh); ends with
## `tests: N passed, M failed` whatever happened (a crashed test binary counts as failed)
test: setup lint
	@mkdir -p target
	@set -o pipefail; status=0; start=$$(date +%s); \
	  $(CARGO) test --locked --workspace --release --no-fail-fast 2>&1 | tee target/test.log || status=$$?; \
	  echo "[time] tests: $$(( $$(date +%s) - start )) s"; \
	  FUZZ_SECONDS=$(FUZZ_TEST_SECONDS) FUZZ_BUILD=$(FUZZ_TEST_BUILD) bash scripts/fuzz.sh 2>&1 | tee -a target/test.log || status=$$?; \
	  bash scripts/test-summary.sh target/test.log && exit $$status

## cross-arm64: the agent and the lab test binary cross-built for aarch64 (incremental), which the
## kernel matrix's arm64 lines boot under qemu-system-aarch64 (make test-arm64)
cross-arm64: setup
	@CARGO=$(CARGO) bash scripts/timed.sh cross-arm64 bash scripts/cross-arm64.sh

## test-arm64: both arm64 lines of the kernel matrix (6.12 and 5.10, outside make test's time
## budget for now), each the whole lab under qemu-system-aarch64
test-arm64: setup cross-arm64
	$(CARGO) test --locked --release -p otel-netprobe --test lab -- --include-ignored kernel_arm64_

## fuzz: every fuzz target (otel-netprobe/fuzz: packet parser vs etherparse, configuration,
## Kubernetes objects, the OTLP writer vs prost, the HTTP request path) for FUZZ_SECONDS each
## (default 300), built optimised with AddressSanitizer; FUZZ_TARGETS="parser otlp" runs some.
## A finding fails it, its input kept in otel-netprobe/fuzz/artifacts/<target>/
FUZZ_SECONDS ?= 300
FUZZ_TEST_SECONDS ?= 30
FUZZ_TEST_BUILD ?= quick
fuzz: setup
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/timed.sh fuzz bash scripts/fuzz.sh

## bench: kernel per-packet cost, maps, reader, export, agent memory, attach, Kubernetes index,
## throughput with/without the agent (ratios to baselines of the same run, or said to be absolute)
bench: build
	$(CARGO) bench --locked -p otel-netprobe --bench netprobe

## image: the agent image from the Dockerfile, built with buildah (IMAGE=..., default
## localhost/otel-netprobe:dev); where no registry answers, the FROM images are made locally
image:
	bash scripts/image.sh

## chart-files: refresh the chart's copies (charts/otel-netprobe/files/) of collector-config/,
## dashboards/ and alerts/ after changing any of them (tests/chart.rs fails until they agree)
chart-files:
	bash scripts/chart-files.sh

## deploy: the image and the chart into the current kube context (minikube/kind: the image is
## loaded into the cluster and pulled with imagePullPolicy Never); no cluster: one line, exit 1
deploy: setup
	bash scripts/deploy.sh

clean:
	$(CARGO) clean
