# k6 targets; the main Makefile includes this file, and it also runs alone:
#   make -f k6/k6.mk k6-smoke BASE_URL=http://127.0.0.1:8080
#
#   k6-install             install k6 $(K6_VERSION) to $(K6) unless that exact version is there
#   k6-smoke               the smoke scenario against a running node at BASE_URL
#   k6 SCENARIO=<name>     any scenario (smoke load stress spike soak hot-account retail batch)
#   k6-smoke-ci            build, start a fresh node on a fresh database, smoke, audit, clean up
#
# Scenario parameters go through K6_ENV, e.g.
#   make k6 SCENARIO=load K6_ENV="-e RATE=1000 -e HOLD=5m"
# Summaries land in k6/out/<scenario>-summary.{json,txt}.

# The directory of this file, taken when it is read (before any other
# include changes MAKEFILE_LIST), so the targets work from any directory.
K6_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

GO ?= go
# Pinned: v1.8.1 is the newest k6 on the module proxy and builds with the
# repository's Go (1.26); `go install` compiles it in about two minutes.
K6_VERSION ?= v1.8.1
K6_GOBIN := $(firstword $(subst :, ,$(shell $(GO) env GOPATH)))/bin
K6 ?= $(K6_GOBIN)/k6
BASE_URL ?= http://127.0.0.1:8080
# The API key the scenarios send: BURSAR_API_KEY, else the one `make run`
# created (bursar-data/api-key).
API_KEY ?= $(or $(BURSAR_API_KEY),$(shell cat bursar-data/api-key 2>/dev/null))
SCENARIO ?= smoke
# Not K6_OUT: k6 itself reads K6_OUT (as --out), and make passes command-line
# variables to the recipe's environment.
K6_SUMMARY_DIR ?= $(K6_DIR)/out
K6_ENV ?=
K6_SCENARIOS := smoke load stress spike soak hot-account retail batch

.PHONY: k6-install k6-smoke k6 k6-smoke-ci

k6-install:
	@if [ -x "$(K6)" ] && "$(K6)" version 2>/dev/null | grep -q "k6 $(K6_VERSION) "; then \
		echo "k6 $(K6_VERSION) is installed at $(K6)"; \
	else \
		echo "installing k6 $(K6_VERSION) to $(K6_GOBIN) (go install compiles it: a few minutes)"; \
		GOBIN="$(K6_GOBIN)" GOFLAGS=-buildvcs=false $(GO) install go.k6.io/k6@$(K6_VERSION) && "$(K6)" version; \
	fi

# A target-specific value reaches the prerequisite: k6-smoke runs the k6
# recipe with SCENARIO=smoke.
k6-smoke: override SCENARIO := smoke
k6-smoke: k6

k6: k6-install
	@case " $(K6_SCENARIOS) " in *" $(SCENARIO) "*) ;; \
		*) echo "unknown SCENARIO=$(SCENARIO); one of: $(K6_SCENARIOS)" >&2; exit 2;; esac
	@curl -fsS -o /dev/null --max-time 5 "$(BASE_URL)/healthz" \
		|| { echo "no Bursar node answers at BASE_URL=$(BASE_URL) (start one with 'make run', or pass BASE_URL=...)" >&2; exit 2; }
	@mkdir -p "$(K6_SUMMARY_DIR)"
	"$(K6)" run --quiet -e BASE_URL="$(BASE_URL)" -e API_KEY="$(API_KEY)" -e OUT_DIR="$(K6_SUMMARY_DIR)" $(K6_ENV) "$(K6_DIR)/$(SCENARIO).js"

k6-smoke-ci:
	K6="$(K6)" bash $(K6_DIR)/smoke-ci.sh
