"""Judging and showing runs: logs judged by replay, witnesses, coverage, per-CPU stories, race diagrams,
timeline pictures, Perfetto traces, scaling plots, the mutant table and the campaign page.
"""
