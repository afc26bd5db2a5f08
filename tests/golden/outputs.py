"""Golden report files of the bundled samples (torchinfo-style golden-output tests).

``python tests/golden/outputs.py`` rewrites ``tests/golden/outputs/``; ``tests/test_golden_outputs.py``
checks that a fresh analysis gives the same bytes. Only what depends on the machine is normalised
in ``analysis.json``: library versions, absolute file paths and the device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "outputs"
SAMPLES = ("digits_vgg", "digits_resnet", "digits_autoencoder", "digits_unet")
ESTIMATORS = ("paper", "spectral")


def normalised(analysis_json: bytes) -> bytes:
    doc = json.loads(analysis_json)
    doc["versions"] = {}
    doc["device"] = "(device)"
    doc["model"]["files"] = [Path(f).name for f in doc["model"]["files"]]
    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode()


def render(sample: str, estimator: str) -> dict[str, bytes]:
    import entropyflow
    from entropyflow.report import report_files

    result = entropyflow.analyze(f"sample:{sample}", estimator=estimator, device="cpu")
    files = report_files(result)
    return {
        "layers.csv": files["layers.csv"],
        "filters.csv": files["filters.csv"],
        "analysis.json": normalised(files["analysis.json"]),
    }


def main() -> None:
    for sample in SAMPLES:
        for estimator in ESTIMATORS:
            folder = HERE / f"{sample}-{estimator}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in render(sample, estimator).items():
                (folder / name).write_bytes(data)
            print(f"wrote {folder}", file=sys.stderr)


if __name__ == "__main__":
    main()
