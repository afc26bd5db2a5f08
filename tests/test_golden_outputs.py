"""The report files of the bundled samples, byte for byte, against tests/golden/outputs/
(regenerate with ``python tests/golden/outputs.py`` only when a change of numbers or format is meant)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from outputs import ESTIMATORS, HERE, SAMPLES, render  # noqa: E402


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("sample", SAMPLES)
def test_report_files_are_byte_identical(sample, estimator):
    for name, data in render(sample, estimator).items():
        golden = HERE / f"{sample}-{estimator}" / name
        assert data == golden.read_bytes(), f"{golden.relative_to(HERE)} differs"
