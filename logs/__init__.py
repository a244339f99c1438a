"""File formats: event logs (msgpack / JSONL), schedule files, results files, controlled-run logs, and a log
header back to its scenario and configuration.
"""
