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

.PHONY: all deps build test run bench docs fuzz clean format load_test

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

run: build
	scripts/run-example.sh $(BUILD) $(CONFIG)

bench: build
	tools/bench/run.sh $(BUILD)

# PATH's load test against a running dataplane (LOCAL=1 starts mocks and a dataplane itself).
SERVICE_IDS ?= eth,poly
URL ?= http://127.0.0.1:3069
DURATION ?= 10s
RATE ?= 0
MIN_SUCCESS ?= 99.9
MAX_P99 ?= 1000ms
LOCAL ?= 0
load_test: build
	tools/load_test/run.sh --build $(BUILD) --services $(SERVICE_IDS) --url $(URL) --duration $(DURATION) \
		--rate $(RATE) --min-success $(MIN_SUCCESS) --max-p99 $(MAX_P99) $(if $(filter 1,$(LOCAL)),--local,)

fuzz: deps
	scripts/fuzz.sh $(FUZZ_TARGETS)

format:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build build-* 
