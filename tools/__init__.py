"""Offline tools built on the runtime: evaluation, classical baseline, bench, synthetic eyes, mask truth, GPU check."""
