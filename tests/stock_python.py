"""Run a model card's own Python lines as a user without thawkit would: in a fresh interpreter where
importing thawkit fails (a meta-path blocker), with the same libraries installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

_PRELUDE = '''import sys
class _NoThawkit:
    def find_spec(self, name, path=None, target=None):
        if name == "thawkit" or name.startswith("thawkit."):
            raise ModuleNotFoundError("No module named 'thawkit' (blocked: a card's snippet must not need it)")
        return None
sys.meta_path.insert(0, _NoThawkit())
'''
_EPILOGUE = '''
import json as _json
assert not [m for m in sys.modules if m == "thawkit" or m.startswith("thawkit.")]
print("RESULT " + _json.dumps(RESULT_EXPRESSION))
'''


def run_without_thawkit(code: str, result: str = "None") -> tuple[Any, str]:
    """(the value of ``result`` after ``code`` ran, everything the code printed)."""
    script = _PRELUDE + code + _EPILOGUE.replace("RESULT_EXPRESSION", result)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    value = json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[len("RESULT "):])
    return value, "\n".join(line for line in lines if not line.startswith("RESULT "))
