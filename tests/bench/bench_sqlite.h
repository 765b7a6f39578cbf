/*
 * bench_sqlite.h - the SQLite side of `make bench`: Peek's schema, indexes
 * and PRAGMAs (variant "peek") and a hand-tuned variant ("tuned"), loaded
 * from the generator's NDJSON, and the SQL each query of the mix becomes.
 */
#pragma once

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

enum bs_variant { BS_PEEK, BS_TUNED };

/* Opens (creating) the database file path for variant v, registers the
 * NATURAL_CI collation, applies the variant's PRAGMAs.  Returns NULL and
 * prints why on failure. */
sqlite3 *bs_open(const char *path, enum bs_variant v);

/* Loads dir/{tags,studios,performers,groups,galleries,scenes}.ndjson into
 * db with the variant's schema.  Returns 0 on success. */
int bs_load(sqlite3 *db, enum bs_variant v, const char *dir);

/* Runs sql (which selects one column: the scene id) and appends the ids to
 * ids[0..*n) (at most cap).  Returns 0 on success. */
int bs_ids(sqlite3 *db, const char *sql, uint64_t *ids, size_t cap, size_t *n);

/* Runs a query returning one integer. */
int bs_count(sqlite3 *db, const char *sql, int64_t *out);
