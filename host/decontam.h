// defines: decontamination — the share of a candidate's word n-grams that also occur in one reference
// (test) record; a synthetic record over the threshold must not be trained on.
#pragma once

typedef struct Decontam Decontam;

Decontam *decontam_new(int n);  // n: words per n-gram (e.g. 8; shorter texts use their whole word run)
void decontam_free(Decontam *d);
void decontam_add_reference(Decontam *d, const char *text, int id);
// Largest share (0..1) of text's n-grams found in a single reference; *ref_id gets that reference (-1 none).
double decontam_overlap(const Decontam *d, const char *text, int *ref_id);
