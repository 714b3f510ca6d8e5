# bis: back-in-stock notifications inside PostgreSQL (built with PGXS)

EXTENSION = bis
MODULE_big = bis
OBJS = src/bis.o src/trigger.o src/render.o
DATA = $(wildcard sql/bis--*.sql)
PGFILEDESC = "bis - back-in-stock notifications"

REGRESS = install thresholds matching subscriptions track errors render queue purge expansion waves
ISOLATION = notify_once concurrent_restock restock_deadlock claim expansion
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=bis

PG_CPPFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The benchmark suite: bis against the PL/pgSQL peer, on a throwaway cluster
# (BIS_BENCH_FULL=1 for the long sizes; see test/bench/run.sh)
.PHONY: bench
bench:
	test/bench/run.sh
