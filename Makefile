# bis: back-in-stock notifications inside PostgreSQL (built with PGXS)

EXTENSION = bis
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" bis.control)
MODULE_big = bis
OBJS = src/bis.o src/trigger.o src/restock.o src/matching.o src/track.o src/render.o src/message.o src/rules.o src/token.o src/legacy.o src/distribute.o
# the install script of the current version is built from sql/bis.sql
DATA = sql/bis--$(EXTVERSION).sql $(filter-out sql/bis--$(EXTVERSION).sql, $(wildcard sql/bis--*.sql)) \
       bis--0.1.control
EXTRA_CLEAN = sql/bis--$(EXTVERSION).sql bis-mailer
PGFILEDESC = "bis - back-in-stock notifications"

REGRESS = install thresholds matching subscriptions track stock_levels errors render queue purge \
          expansion waves message rules security upgrade
ISOLATION = notify_once concurrent_restock restock_deadlock claim expansion wakeup thresholds_cache rules
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=bis

PG_CPPFLAGS = -DBIS_VERSION=\"$(EXTVERSION)\" -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(BIS_CFLAGS)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/bis--$(EXTVERSION).sql: sql/bis.sql
	cp $< $@

# bis-mailer, the reference mailer: a client program of its own (libpq and
# libcurl), built with the extension and installed beside pg_config's programs
MAILER_CFLAGS = -Wall -Wextra $(BIS_CFLAGS) -I$(shell $(PG_CONFIG) --includedir) $(shell pkg-config --cflags libcurl)
MAILER_LIBS = -L$(shell $(PG_CONFIG) --libdir) -lpq $(shell pkg-config --libs libcurl)

all: sql/bis--$(EXTVERSION).sql bis-mailer

bis-mailer: src/bis-mailer.c
	$(CC) $(CFLAGS) $(MAILER_CFLAGS) -o $@ $< $(LDFLAGS) $(MAILER_LIBS)

install: install-mailer
uninstall: uninstall-mailer
.PHONY: install-mailer uninstall-mailer bench bench-citus

install-mailer: bis-mailer
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) bis-mailer '$(DESTDIR)$(bindir)/bis-mailer'

uninstall-mailer:
	rm -f '$(DESTDIR)$(bindir)/bis-mailer'

# the benchmark suite: bis against the PL/pgSQL peer, on a throwaway cluster
# (BIS_BENCH_FULL=1 for the long sizes; see test/bench/run.sh)
bench:
	test/bench/run.sh

# the same restock and drain on a Citus cluster of three nodes, beside a single
# server (see test/bench/citus.sh)
bench-citus:
	test/bench/citus.sh
