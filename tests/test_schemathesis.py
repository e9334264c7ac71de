"""schemathesis fuzzes the running service from its own /api/openapi.json: no 5xx, and every
response matches the schema the document declares for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.service import API_KEY, Service

# Bounded so the run takes a minute or two on a shared machine.
MAX_EXAMPLES = "8"


def test_schemathesis_finds_no_server_errors_or_schema_breaks(
    database_url: str, tmp_path: Path
) -> None:
    service = Service(database_url, tmp_path, CALLBRIDGE_RATE_LIMIT_PER_MINUTE="100000").start()
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    try:
        run = subprocess.run(
            [
                st,
                "run",
                f"{service.url}/api/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
                "--max-examples",
                MAX_EXAMPLES,
                "--phases",
                "examples,coverage,fuzzing",
                # One worker: CPython 3.11's ast.parse, which hypothesis calls to describe
                # filters, can fail with "AST constructor recursion depth mismatch" when
                # threads parse at once.
                "--workers",
                "1",
                "--header",
                f"Authorization: Bearer {API_KEY}",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
                "--seed",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        service.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
