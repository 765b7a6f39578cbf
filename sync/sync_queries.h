/*
 * sync_queries.h - the GraphQL documents of sync/queries/NAME.graphql,
 * embedded at build time by tools/embed_queries.sh.
 */
#pragma once

struct sync_query {
    const char *name; /* file name without .graphql = operationName */
    const char *text; /* the document */
};

/* Terminated by {NULL, NULL}. */
extern const struct sync_query sync_queries[];
