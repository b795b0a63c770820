"""perf/bench.py runs its kdbench part at tiny sizes and writes the JSON the README describes."""

from __future__ import annotations

import importlib.util
import json
import sys

from tests.helpers import ROOT

BENCH = ROOT / "perf" / "bench.py"


def load_bench(monkeypatch):
    # perf/ is a folder of scripts, not a package: load the script as a module (registered
    # in sys.modules for the test only, as its dataclasses look their module up there).
    spec = importlib.util.spec_from_file_location("kdbench_perf_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_bench_quick_writes_json(tmp_path, monkeypatch, capsys):
    bench = load_bench(monkeypatch)
    out = tmp_path / "bench.json"
    # Only kdbench's statevector runs, so no peer needs to be installed; a selected peer
    # that cannot be imported (here: made to look so) is skipped, and says so.
    monkeypatch.setattr(bench, "available", lambda impl: impl.package == "kdbench")
    only = ["kdbench-sv", "kdbench-sv-shots", "pl-backprop"]
    bench.main(["--quick", "--qubits", "3", "--only", *only, "--out", str(out)])
    assert "skipped pl-backprop" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["skipped"] == ["pl-backprop"]

    assert result["machine"]["cores"] >= 1
    assert result["machine"]["versions"]["torch"]
    assert result["settings"]["batch"] == 32
    runs = result["qubits"]["3"]["runs"]
    assert set(runs) == {"kdbench-sv", "kdbench-sv-shots"}
    for run in runs.values():
        repeats = result["settings"]["repeats"]
        assert len(run["seconds"]) == len(run["samples_per_s"]) == repeats
        assert run["median_samples_per_s"] > 0
        assert all(len(losses) == -(-run["samples"] // 32) for losses in run["batch_losses"])
    # No peer ran: no ratio, and no agreement check with a single exact model.
    assert result["qubits"]["3"]["ratios"] == {}
    assert result["qubits"]["3"]["check"]["agree"] is None
