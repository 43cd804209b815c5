"""Verification: reference outputs, accuracy metrics and gates, latency, reports.

Public API: ``metrics`` (cosine_rows, psnr_db, top1_agreement, retrieval_agreement,
zero_shot_accuracy, embedding_metrics), ``gate`` (check_accuracy,
format_shortfalls), ``latency`` (measure, measure_isolated), ``rounds`` (interleaved timing),
``machine`` (the yardstick, machine_differences), ``compare`` (the regression gate),
``report`` (Record, write_report, read_report, machine_info).
"""
