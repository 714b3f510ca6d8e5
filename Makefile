# bis: back-in-stock notifications inside PostgreSQL (built with PGXS)

EXTENSION = bis
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" bis.control)
MODULE_big = bis
OBJS = src/bis.o src/trigger.o src/restock.o src/matching.o src/track.o src/render.o src/template.o src/message.o src/rules.o src/settings.o src/token.o src/base64url.o src/orders.o src/legacy.o src/distribute.o src/tenant.o
# the install script of the current version is built from sql/bis.sql
DATA = sql/bis--$(EXTVERSION).sql $(filter-out sql/bis--$(EXTVERSION).sql, $(wildcard sql/bis--*.sql)) \
       bis--0.1.control
EXTRA_CLEAN = sql/bis--$(EXTVERSION).sql
# bis's metrics for prometheus-postgres-exporter, into pg_config --docdir
DOCS = monitoring/postgres-exporter-queries.yaml
PGFILEDESC = "bis - back-in-stock notifications"

REGRESS = install thresholds matching subscriptions track stock_levels errors render queue purge \
          expansion waves message rules lifecycle answers trust push security tenants upgrade
ISOLATION = notify_once concurrent_restock restock_deadlock claim expansion wakeup thresholds_cache rules
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=bis

PG_CPPFLAGS = -DBIS_VERSION=\"$(EXTVERSION)\" -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(BIS_CFLAGS)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/bis--$(EXTVERSION).sql: sql/bis.sql
	cp $< $@

# bis-mailer, the reference mailer: a client program with a PGXS Makefile of
# its own in src/mailer, built and installed with the extension
all: sql/bis--$(EXTVERSION).sql mailer

mailer:
	$(MAKE) -C src/mailer PG_CONFIG='$(PG_CONFIG)' BIS_CFLAGS='$(BIS_CFLAGS)'

install: install-mailer
uninstall: uninstall-mailer
clean: clean-mailer
.PHONY: mailer install-mailer uninstall-mailer clean-mailer bench bench-citus

install-mailer: mailer
	$(MAKE) -C src/mailer PG_CONFIG='$(PG_CONFIG)' install

uninstall-mailer:
	$(MAKE) -C src/mailer PG_CONFIG='$(PG_CONFIG)' uninstall

clean-mailer:
	$(MAKE) -C src/mailer PG_CONFIG='$(PG_CONFIG)' clean

# the benchmark suite: bis against the PL/pgSQL peer, on a throwaway cluster
# (BIS_BENCH_FULL=1 for the long sizes; see test/bench/run.sh)
bench:
	test/bench/run.sh

# the same restock and drain on a Citus cluster of three nodes, beside a single
# server (see test/bench/citus.sh)
bench-citus:
	test/bench/citus.sh
