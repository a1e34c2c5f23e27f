"""fpsim.analysis imports without torch (and without pyplot): torch is needed only when called."""

import subprocess
import sys

CODE = """
import sys
sys.modules['torch'] = None  # any 'import torch' now raises ImportError
import fpsim.analysis as fa
assert 'matplotlib.pyplot' not in sys.modules
print(fa.format_errors("e4m3", [0.25]).max_abs)
try:
    fa.sharpness(object(), lambda y: y, None)
except ImportError:
    print('needs torch')
"""


def test_import_without_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0.0", "needs", "torch"]
