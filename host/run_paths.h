// defines: the run directory's layout (design.md §4), each file named once for the loop (run.c), the report
// (report.c), the standalone stages (tools/cmd_stages.c) and the tests. Names with %02d take the round; the
// files of several judges are these names with "-N" before the extension (judge_stage.h judge_file_for).
#pragma once

#define RUN_CONFIG "config.yaml"  // the config the directory was started with
#define RUN_LEDGER "ledger.sqlite"
#define RUN_CACHE "cache.sqlite"  // every service reply, so a resumed run never pays twice
#define RUN_REPORT_MD "report.md"
#define RUN_REPORT_HTML "report.html"
#define RUN_DATA_DIR "data"
#define RUN_ROUNDS_DIR "rounds"
#define RUN_LOGS_DIR "logs"
#define RUN_SERVE_LOG "logs/serve.log"

#define RUN_COVERAGE_TRAIN "data/coverage.train.jsonl"
#define RUN_COVERAGE_TEST "data/coverage.test.jsonl"
#define RUN_CEILING_ANSWERS "data/ceiling.answers.jsonl"  // the service's own answers: the score to match
#define RUN_CEILING_JUDGE "data/ceiling.judge.jsonl"
#define RUN_CEILING_METRICS "data/ceiling.metrics.json"
#define RUN_CEILING_SCORES "data/ceiling.scores.jsonl"
#define RUN_SYNTH_NAME "round-%02d.synth.jsonl"  // in data/ of a run, or the --out of `llamaduo synth`
#define RUN_DROPPED_NAME "round-%02d.dropped.jsonl"  // synthesis's rejects with the reason
#define RUN_SYNTH RUN_DATA_DIR "/" RUN_SYNTH_NAME
#define RUN_DROPPED RUN_DATA_DIR "/" RUN_DROPPED_NAME

#define RUN_ROUND "rounds/%02d"
#define RUN_TRAIN_DATA "rounds/%02d/train.jsonl"  // every record the round trains on
#define RUN_TRAIN_CONFIG "rounds/%02d/train.yaml"
#define RUN_CHECKPOINT "rounds/%02d/checkpoint/state.json"  // names the state a resumed training starts from
#define RUN_ADAPTER "rounds/%02d/adapter"
#define RUN_ADAPTER_WEIGHTS "rounds/%02d/adapter/adapter_model.safetensors"
#define RUN_ADAPTER_CONFIG "rounds/%02d/adapter/adapter_config.json"
#define RUN_INFER "rounds/%02d/infer.jsonl"
#define RUN_JUDGE_NAME "judge.jsonl"
#define RUN_METRICS_NAME "metrics.json"
#define RUN_SCORES_NAME "scores.jsonl"  // every measure of each answer, its score and what was wrong with it
#define RUN_JUDGE "rounds/%02d/" RUN_JUDGE_NAME
#define RUN_METRICS "rounds/%02d/" RUN_METRICS_NAME
#define RUN_SCORES "rounds/%02d/" RUN_SCORES_NAME
// the probe: training records the student answers after a round, scored like the test set, for targeted synthesis
#define RUN_PROBE "rounds/%02d/probe.jsonl"
#define RUN_PROBE_ANSWERS "rounds/%02d/probe.infer.jsonl"
#define RUN_PROBE_JUDGE "rounds/%02d/probe.judge.jsonl"
#define RUN_PROBE_SCORES "rounds/%02d/probe.scores.jsonl"
#define RUN_PROBE_METRICS "rounds/%02d/probe.metrics.json"
