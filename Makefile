# Thin wrapper over CMake for the README's commands. `make SANITIZE=address,undefined test`
# builds into its own directory so the two builds never mix.
SANITIZE ?=
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(SANITIZE),)
BUILD ?= build
else
BUILD ?= build-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,
WERROR ?= $(if $(CI),ON,OFF)
CONFIG ?= examples/standalone.yaml

.PHONY: all deps build test run bench docs fuzz clean format load_test install

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DSANITIZE=$(SANITIZE) -DWERROR=$(WERROR)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

docs: build
	$(BUILD)/tools/pathway-config doc > docs/config.md

# make install [PREFIX=/usr/local] [DESTDIR=]: binaries to PREFIX/bin, example configs to
# PREFIX/share/pathway/examples, docs to PREFIX/share/doc/pathway, systemd units to
# PREFIX/lib/systemd/system, the `pathway` system user to PREFIX/lib/sysusers.d (docs/deploy.md).
PREFIX ?= /usr/local
DESTDIR ?=
install: build
	DESTDIR='$(DESTDIR)' cmake --install $(BUILD) --prefix '$(PREFIX)'

run: build
	scripts/run-example.sh $(BUILD) $(CONFIG)

bench: build
	tools/bench/run.sh $(BUILD)

# PATH's load test against a running dataplane (`make run` in another terminal), or LOCAL=1: it starts
# mocks and a dataplane itself. ADMIN is the dataplane's admin listener (for /stats and progress).
SERVICE_IDS ?= eth,poly
URL ?= http://127.0.0.1:3069
ADMIN ?= 127.0.0.1:9901
DURATION ?= 10s
RATE ?= 0
MIN_SUCCESS ?= 99.9
MAX_P99 ?= 1000ms
LOCAL ?= 0
load_test: deps $(if $(filter 1,$(LOCAL)),build,)
	tools/load_test/run.sh --build $(BUILD) --services $(SERVICE_IDS) --url $(URL) --admin $(ADMIN) \
		--duration $(DURATION) --rate $(RATE) --min-success $(MIN_SUCCESS) --max-p99 $(MAX_P99) \
		$(if $(filter 1,$(LOCAL)),--local,)

fuzz: deps
	scripts/fuzz.sh $(FUZZ_TARGETS)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-* 
