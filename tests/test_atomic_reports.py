"""Benchmark reports filled by several processes at once (diffussm_lib/atomic.py): ``store_runs``
joins the runs under ``file_lock``, so no writer's read-join-write drops another's run."""

import json
import threading

from diffussm_lib.atomic import store_runs


def test_writers_storing_at_once_lose_no_run(tmp_path):
    out = tmp_path / "report.json"

    def writer(w):
        runs = {}
        for i in range(25):
            runs[f"w{w} | run {i}"] = {"fid": float(i)}
            runs = store_runs(out, {"writer": w}, runs)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = json.loads(out.read_text())
    assert len(stored["runs"]) == 100 and stored["writer"] in range(4)


def test_the_callers_runs_win_and_stored_ones_are_kept(tmp_path):
    out = tmp_path / "report.json"
    store_runs(out, {}, {"a": 1, "b": 2})
    joined = store_runs(out, {"x": True}, {"b": 3, "c": 4})
    assert joined == {"a": 1, "b": 3, "c": 4} == json.loads(out.read_text())["runs"]
