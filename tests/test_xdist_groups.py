"""``make test``'s ``--dist loadgroup`` keeps each ``xdist_group`` on one worker.

The suite relies on it: a group shares one cold simulator build or one Verilog
conversion (``sim/top_build.py``'s presets, the kv260 co-simulation, the Vivado flows),
and a split group builds it twice, once on each worker, at the same time. pytest 9.2 with
pytest-xdist 3.8 split every group (the lock pins the pair that keeps them); this runs a
two-worker session on a group of four tests and a module-level group, as the suite marks
them, and checks where each test ran.
"""

from __future__ import annotations

import re
import subprocess
import sys


def test_loadgroup_keeps_each_group_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(
        "import pytest, time\n"
        "pytestmark = pytest.mark.xdist_group('module')\n"
        "@pytest.mark.parametrize('x', range(3))\n"
        "def test_module(x): time.sleep(0.2)\n")
    (tmp_path / "test_marked.py").write_text(
        "import pytest, time\n"
        "@pytest.mark.xdist_group('function')\n"
        "@pytest.mark.parametrize('x', range(3))\n"
        "def test_function(x): time.sleep(0.2)\n"
        "@pytest.mark.parametrize('x', range(4))\n"
        "def test_free(x): time.sleep(0.2)\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                             "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED \S+::(test_\w+)\[\d\](@\w+)?", result.stdout)
    assert len(ran) == 10, result.stdout
    for group, name in (("@module", "test_module"), ("@function", "test_function")):
        workers = {worker for worker, test, suffix in ran if test == name}
        assert {suffix for _, test, suffix in ran if test == name} == {group}, result.stdout
        assert len(workers) == 1, f"{name}: split over {sorted(workers)}"
