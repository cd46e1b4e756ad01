"""The parse pass: plain code is read for its imports alone; workers start from anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from analysis.collect_files import collect_files
from analysis.parse_files import parse_files
from analysis.state import Analysis, Options

ROOT = Path(__file__).resolve().parents[2]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))


def test_plain_helpers_are_read_for_imports_and_model_users_in_full(tmp_path: Path) -> None:
    # given an app, a helper that builds a model (no marker but an import of the models
    # module), a helper that calls it, and a helper that uses nothing of the project
    _write(tmp_path, {
        "manage.py": "",
        "shop/__init__.py": "",
        "shop/models.py": "from django.db import models\n\n\nclass Product(models.Model):\n"
                          "    pass\n",
        "shop/build.py": "from shop.models import Product\n\n\ndef make(n):\n"
                         "    return Product(name=n)\n",
        "shop/batch.py": "from shop import build\n\n\ndef run():\n    return build.make('x')\n",
        "shop/maths.py": "import math\nfrom collections import (\n    defaultdict,\n)\n\n\n"
                         "def norm(v):\n    return math.sqrt(v)\n",
    })
    # when the files are parsed
    a = parse_files(collect_files(Analysis(Options(root=tmp_path, out=tmp_path / "out"))))
    by_module = {f.module: f for f in a.facts}
    # then only the helper that reaches no project code (and the empty files) are read
    # for their imports alone
    assert {m for m, f in by_module.items() if f.imports_only} == {"manage", "shop", "shop.maths"}
    assert [n for n, _ in by_module["shop.maths"].imported] == ["math", "collections.defaultdict"]
    assert [u.name for u in by_module["shop.batch"].units if u.name == "run"] == ["run"]


def test_worker_processes_start_from_a_script_on_stdin(tmp_path: Path) -> None:
    # given a script read from standard input (no file to re-import), with no main guard,
    # and a threshold low enough that the sample project is parsed in worker processes
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        import analysis.parse_files as pf
        from analysis.collect_files import collect_files
        from analysis.state import Analysis, Options
        pf.PARALLEL_FROM = 0
        root = Path({str(ROOT / "tests" / "analysis" / "sample_project")!r})
        out = Path({str(tmp_path)!r})
        a = pf.parse_files(collect_files(Analysis(Options(root=root, out=out))))
        print(len(a.facts))
    """)
    # when it runs
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True,
                          timeout=120, check=False)
    # then the workers parse the files and the script ends normally
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) > 10
