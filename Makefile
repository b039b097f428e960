# Thin front end over CMake. `make test` goes from a fresh Debian machine to a green test run.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
# make demo DIR=/some/dir hashes that directory (default: the Python standard library);
# DEMO_ARGS passes any other option of the demo, e.g. DEMO_ARGS="--mode pool --json".
DIR ?=
DEMO_ARGS ?=

.PHONY: all deps ci-deps configure build test demo bench install abi-check abi-update package fuzz tsan \
	format format-check clean

all: build

# What the build, the tests and the demo need.
deps:
	@scripts/install-deps

# What CI and development add: a second compiler, the formatter, valgrind.
ci-deps:
	@scripts/install-ci-deps

configure: deps
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

demo: build
	@$(BUILD)/demo/mproc-demo $(DEMO_ARGS) $(if $(DIR),"$(DIR)")

# The peer libraries (bench/peers) are installed here only, never for `make test`.
bench:
	@scripts/install-bench-deps
	@$(MAKE) --no-print-directory build BUILD=build-bench BUILD_TYPE=Release
	@python3 bench/run.py --build build-bench

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

# The ABI guard (docs/versioning.md): compare the built libmproc.so with abi/libmproc.so.N.abi;
# abi-update rewrites that baseline, on purpose only (a release, a SONAME bump).
abi-check: build
	@scripts/abi check $(BUILD)

abi-update: build
	@scripts/abi update $(BUILD)

# Build the Debian packages, lintian them, install them, use them, remove them (what CI does).
package:
	@scripts/ci-package

# The libFuzzer targets of tests/fuzz (build-fuzz): replay the corpus, fuzz each FUZZ_SECONDS (60).
fuzz: ci-deps
	@scripts/fuzz

# ThreadSanitizer: build-tsan (clang, -DMPROC_TSAN=ON), the suites in thread mode (scripts/tsan).
tsan: ci-deps
	@scripts/tsan

format: ci-deps
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check: ci-deps
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	@rm -rf build build-*
