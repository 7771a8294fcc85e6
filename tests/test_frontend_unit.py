"""The front end's Vitest unit tests (stores, API client, guard and views)."""

import os
import re
import subprocess

from frontend_tools import FRONTEND, ensure_frontend, require_tool


def test_vitest_unit_tests_pass():
    ensure_frontend(build=False)
    npx = require_tool("npx")

    result = subprocess.run(
        [npx, "vitest", "run", "--reporter=dot"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CI": "true", "NO_COLOR": "1"},
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    files = re.search(r"Test Files\s+(\d+) passed \((\d+)\)", output)
    tests = re.search(r"Tests\s+(\d+) passed \((\d+)\)", output)
    assert files and tests, output[-3000:]
    # Every file and every test passed, and the suite did not shrink by accident.
    assert files.group(1) == files.group(2)
    assert tests.group(1) == tests.group(2)
    assert int(files.group(1)) >= 9
    assert int(tests.group(1)) >= 80
