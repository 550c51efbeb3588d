# Bursar: the two commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/bursar?sslmode=disable
BURSAR_HTTP_ADDR ?= 127.0.0.1:8080
export DATABASE_URL BURSAR_HTTP_ADDR

.PHONY: run test build vet fuzz bench clean

build:
	$(GO) build -o bin/bursar ./cmd/bursar

## run: one node on embedded defaults (embedded broker under ./bursar-data, local PostgreSQL), with an
## admin API key created on the first run (bursar-data/api-key).
run: build
	@bash scripts/ensure-services.sh
	@psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'bursar'" | grep -q 1 \
		|| psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE bursar"
	@mkdir -p bursar-data
	@if [ ! -s bursar-data/api-key ]; then \
		./bin/bursar apikey create --name "make run" --scopes admin --out bursar-data/api-key >/dev/null && \
		echo "Created an admin API key, shown once here and kept in bursar-data/api-key (make clean removes it):" && \
		cat bursar-data/api-key; \
	else echo "API key: bursar-data/api-key (export BURSAR_API_KEY=\$$(cat bursar-data/api-key))"; fi
	./bin/bursar serve

## test: the whole suite (ends with a k6 smoke run against a fresh node, installing k6 if missing) against real PostgreSQL, Redis and an in-process Kafka broker.
test:
	@bash scripts/ensure-services.sh --redis
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above"; exit 1)
	$(GO) vet ./...
	CI=$${CI:-true} $(GO) test -count=1 -timeout 30m ./...
	CI=$${CI:-true} $(GO) test -count=1 -race -timeout 20m ./engine/... ./ingress/ ./actors/ ./cluster/ ./storage/ ./kafkalog/ ./retry/ ./auth/
	bash k6/smoke-ci.sh

## fuzz: run every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzCheck$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzParsePHC$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzCheckToken$$' -fuzztime=$(FUZZTIME) ./auth/
	$(GO) test -run='^$$' -fuzz='^FuzzErrorCode$$' -fuzztime=$(FUZZTIME) ./bench/
	$(GO) test -run='^$$' -fuzz='^FuzzAuthorizationHeader$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeCachedBalance$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzFraming$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeOpen$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeTransfer$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBatch$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeUserBodies$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeMoney$$' -fuzztime=$(FUZZTIME) ./ingress/
	$(GO) test -run='^$$' -fuzz='^FuzzAppendString$$' -fuzztime=$(FUZZTIME) ./jsonw/
	$(GO) test -run='^$$' -fuzz='^FuzzJournalEntry$$' -fuzztime=$(FUZZTIME) ./kafkalog/
	$(GO) test -run='^$$' -fuzz='^FuzzParseAmount$$' -fuzztime=$(FUZZTIME) ./ledger/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeCommand$$' -fuzztime=$(FUZZTIME) ./ledger/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBarrier$$' -fuzztime=$(FUZZTIME) ./ledger/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeSlotMap$$' -fuzztime=$(FUZZTIME) ./ledger/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeWire$$' -fuzztime=$(FUZZTIME) ./ledger/

## bench: Go micro-benchmarks of the core and the write-behind encoding.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./ledger/ ./storage/

## clean: remove the binary and the local node's state: the embedded broker's log and, with it, the
## database `make run` uses (a log and a database only make sense together; a node refuses a log that
## ends before the offsets its database has applied).
clean:
	rm -rf bin bursar-data
	-psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS bursar WITH (FORCE)"

include k6/k6.mk
