"""Shared test setup: deterministic, small, single-process torch on 2 cores."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")        # no test may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- file order for the two xdist workers -------------------------------------------------------
# `--dist loadfile` hands out whole files in collection order and queues the next file on a worker
# as soon as its current one has 2 tests left. In alphabetical order the slowest files (the real
# checkpoints, in-graph preprocess) came last and queued up on one worker while the other sat idle
# (measured: 1301 s against 929 s of work). Slowest files first (longest-processing-time order)
# leaves only short files for the tail. The times are per-file work measured on one machine;
# only their order matters. Refresh: `pytest -q --write-file-durations tests/file_durations.json`.
DURATIONS = Path(__file__).with_name("file_durations.json")
UNKNOWN_FILE_S = 30.0  # a file not in the table (new) goes among the middling ones, not last


def pytest_addoption(parser):
    parser.addoption("--write-file-durations", metavar="PATH", default=None,
                     help="after the run, write each test file's total time (setup+call+teardown, "
                          "seconds) into the JSON table at PATH (files not run keep their entry); "
                          "tests/file_durations.json orders the files")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items):
    try:
        seconds = json.loads(DURATIONS.read_text())["seconds"]
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"{DURATIONS} is unreadable ({e}); restore it from git") from e
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(_file_of(item.nodeid), i)
    # stable: a file's own tests keep their order; ties keep collection order
    items.sort(key=lambda it: (-seconds.get(_file_of(it.nodeid), UNKNOWN_FILE_S), first_seen[_file_of(it.nodeid)]))


class _FileDurations:
    def __init__(self, path: str):
        self.path, self.seconds = Path(path), defaultdict(float)

    def pytest_runtest_logreport(self, report):  # on the controller too: workers forward reports
        self.seconds[_file_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self, session):  # registered on the controller only (pytest_configure)
        try:  # a partial run updates the files it ran and keeps the others
            table = json.loads(self.path.read_text())["seconds"]
        except (OSError, ValueError, KeyError):
            table = {}
        table.update({f: round(s, 1) for f, s in self.seconds.items()})
        table = dict(sorted(table.items(), key=lambda kv: -kv[1]))
        self.path.write_text(json.dumps({"seconds": table}, indent=1) + "\n")


def pytest_configure(config):
    path = config.getoption("--write-file-durations")
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_FileDurations(path), "edgeclip-file-durations")
