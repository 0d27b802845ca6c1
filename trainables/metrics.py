"""The names of what a student trial measures, defined once: the search's objectives, ASHA's metric, the
benchmark's keys, what reaches ``trials.csv``, what the printed front and the report's hover show, and what an
exported folder records. Produced by ``trainables/student.py`` (``fused_metrics``, ``validate_int8``, ``measure``)
and ``inference/benchmark.py``; read by the search, the analysis and the studies. No torch here.
"""
# what a finished trial is judged on (the search's objectives): int8 validation wF1 of the fused model,
# latency end to end (tokenisation + lexical n-grams + model), what a user of the folder waits for, and size.
# Every round reports the three keys (Ray Tune checks each result for the searcher's metrics); before the
# first rung there is no int8 model yet and they are NaN. A multi-objective OptunaSearch reads only the
# trial's last result, which is always a rung or the last round, so it never sees the NaN.
ACCURACY, LATENCY, SIZE = "int8_val_weighted_f1", "e2e_ms_p50", "size_mib"  # selection, the front's order, limits
OBJECTIVES = {ACCURACY: "max", LATENCY: "min", SIZE: "min"}
ASHA_METRIC = "val_weighted_f1"  # ASHA decides on fp32 validation (int8 exists only at its rungs)

FP32_BENCH_KEYS = ("latency_ms_p50", "latency_ms_p95", "e2e_ms_p50", "e2e_ms_p95", "size_mib")
BENCH_KEYS = ("latency_ms_p50", "latency_ms_p95", "latency_ms_spread", "e2e_ms_p50", "e2e_ms_p95", "e2e_ms_spread",
              "tokenize_ms_p50", "throughput_b32_per_s",
              "size_mib", "n_latency", "bench_sha", "bench_threads", "bench_s")

# what an export in another quantization form measures again (analysis/export.py:export_form)
EXPORT_BENCH_KEYS = ("size_mib", "latency_ms_p50", "latency_ms_p95", "latency_ms_spread", "e2e_ms_p50", "e2e_ms_p95",
                     "throughput_b32_per_s", "n_latency", "bench_sha", "bench_threads")

# what reaches trials.csv beside the trial's StudentConfig (search/student_stage.py:collect_trials)
TRIAL_METRICS = ["round", "epoch", "val_accuracy", "val_weighted_f1", "val_macro_f1", "int8_val_accuracy",
                  "int8_val_weighted_f1", "int8_val_macro_f1", "int8_fp32_agreement", "int8_round",
                  "student_val_weighted_f1", "int8_student_val_weighted_f1", "expert_weight", "fp32_expert_weight", "gate_slope",
                  "gate_knee", "latency_ms_p50",
                  "latency_ms_p95", "latency_ms_spread", "e2e_ms_p50", "e2e_ms_p95", "e2e_ms_spread", "tokenize_ms_p50",
                  "throughput_b32_per_s", "size_mib", "n_latency", "bench_sha", "bench_threads", "params", "vocab_size",
                  "fp32_latency_ms_p50", "fp32_latency_ms_p95", "fp32_e2e_ms_p50", "fp32_e2e_ms_p95", "fp32_size_mib",
                  "train_pool", "epoch_posts", "node_id", "build_s", "round_train_s", "ptq_eval_s", "bench_s", "fidelity_s",
                  "time_total_s"]
# after them, the fidelity columns (modeling.metrics.fidelity: fidelity_agreement, fidelity_kl, fidelity_<source>),
# whose sources depend on the run's unlabelled pools
FIDELITY = "fidelity_agreement"  # the export's tie-break among members validation cannot tell apart

# the front as search/run.py prints it and as report.html's hover shows it
FRONT_SHOWN = ("int8_val_weighted_f1", "test_weighted_f1", "fidelity_agreement", "e2e_ms_p50", "latency_ms_p50",
               "size_mib", "params")
# what an exported folder's config.json records (analysis/export.py)
EXPORTED = ("val_weighted_f1", "int8_val_accuracy", "int8_val_weighted_f1", "int8_val_macro_f1",
            "export_val_accuracy", "export_val_weighted_f1", "export_val_macro_f1", "quantization_form",
            "test_accuracy", "test_weighted_f1", "test_macro_f1", "test_wf1_low", "test_wf1_high",
            "ood_accuracy", "ood_weighted_f1", "ood_macro_f1", "latency_ms_p50", "latency_ms_p95",
            "e2e_ms_p50", "e2e_ms_p95", "throughput_b32_per_s", "size_mib", "n_latency", "bench_sha", "bench_threads",
            "params", "expert_weight", "gate_slope", "fidelity_agreement", "fidelity_kl",
            "int8_student_val_weighted_f1", "test_student_weighted_f1", "test_expert_weighted_f1",
            "ood_student_weighted_f1", "ood_expert_weighted_f1")
