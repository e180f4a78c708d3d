# audit_ext — PGXS build
EXTENSION = audit_ext
MODULE_big = audit_ext
OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA = $(wildcard sql/audit_ext--*.sql)
PGFILEDESC = "audit_ext - audit trail for PostgreSQL"

REGRESS = setup capture enable_errors options partitioned actor reading retention alerts chain
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=audit_ext
# isolation tests (specs/*.spec, expected/*.out), run by make installcheck
ISOLATION = concurrent_row enable_race enable_partitioned chain_concurrency prune_race
ISOLATION_OPTS = --load-extension=audit_ext

PG_CPPFLAGS = -I$(srcdir)/src
# SHA-256 of the integrity chain (PostgreSQL itself links OpenSSL)
SHLIB_LINK += -lcrypto
# gzip archives of pruned partitions (src/archive.c)
SHLIB_LINK += -lz
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Wno-cast-function-type

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on the shared header (PGXS tracks no header dependencies)
$(OBJS): src/audit_ext.h

# The example alert listener (docs/examples/audit_listen.c), a libpq client.
LISTENER = docs/examples/audit_listen
listener: $(LISTENER)
$(LISTENER): $(LISTENER).c
	$(CC) -O2 -Wall -Werror -o $@ $< -I$(shell $(PG_CONFIG) --includedir) -L$(shell $(PG_CONFIG) --libdir) -lpq
clean: clean-listener
clean-listener:
	rm -f $(LISTENER)
.PHONY: listener clean-listener
