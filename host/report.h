// defines: a run's report — one self-contained HTML file (inline SVG charts, no scripts, nothing fetched) and a
// Markdown summary: judge scores per round with their spread against the service LLM's own (the ceiling),
// data sizes and what dedup and decontamination dropped, tokens and dollars per stage, compute time, a
// break-even estimate, and sample answers side by side. Built from the ledger and the run directory's files.
#pragma once

struct Run;
int report_write(struct Run *r, const char *html_path, const char *md_path);
