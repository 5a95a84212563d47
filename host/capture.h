// defines: the proxy's capture store (SQLite, WAL): the request/response pairs it forwarded, already scrubbed by
// the caller, and in shadow mode the student's answer to the same request beside the service's. A pair is
// committed before its response reaches the client, so an acknowledged capture survives a kill -9. Read back as
// coverage data for `llamaduo run` (deduplicated chat records), as test/answers files the judge scores for
// agreement, or as counts.
#pragma once
#include <stdio.h>

typedef struct CaptureDb CaptureDb;

typedef struct {
    const char *route, *mode, *answered_by;  // the route's name, its mode, "service" or "student"
    const char *messages;  // JSON array of {role, content}, scrubbed (a completion's prompt is one user message)
    const char *answer;  // the answer's text, scrubbed
    double latency_s;
} CaptureRow;

CaptureDb *capture_open(const char *path);  // NULL with an error naming the file
void capture_close(CaptureDb *db);
long capture_put(CaptureDb *db, const CaptureRow *row);  // the row's id, or -1 with an error
// The student's answer to the request of row id, or why it has none (answer NULL).
int capture_set_shadow(CaptureDb *db, long id, const char *answer, const char *error, double latency_s);

typedef struct {
    long rows, exported, duplicates, shadow_pairs;
} CaptureExport;

// since: UTC epoch seconds (0: all). Coverage: the service's answers as chat records {id, messages}, one per
// distinct conversation (the first kept), written atomically to out.
int capture_export_coverage(const char *path, double since, const char *out, CaptureExport *st);
// Shadow pairs: DIR/test.jsonl (the service's answer as the reference) and DIR/answers.jsonl (the student's),
// ready for `llamaduo judge --test DIR/test.jsonl --answers DIR/answers.jsonl`.
int capture_export_shadow(const char *path, double since, const char *dir, CaptureExport *st);
// Counts by route, mode and answerer, and the shadow pairs' agreement (exact match, ROUGE-L, chrF).
int capture_stats(const char *path, double since, FILE *out);
// "2026-11-30", "2026-11-30T12:00:00Z", or an age: "90m", "24h", "7d". 0, or -1 with an error.
int capture_parse_since(const char *text, double *epoch);
