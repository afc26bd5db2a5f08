"""Regenerate every figure in docs/figures/ (and the README's) from the library, offline.

    python docs/figures/make_figures.py

Uses only the bundled samples and random initialisations (no downloads): the paper's Figure 1
(trained vs random init), Figure 8 (ResNet-50) and Figure 9 (U-Net) styles, and profiles.
"""

from __future__ import annotations

from pathlib import Path

import entropyflow
from entropyflow.report.figures import Panel, PlotOptions, entropy_figure, profile_figure, save_figure

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[1] / "sample_models"


def write(name: str, fig) -> None:
    (HERE / name).write_bytes(save_figure(fig, "png"))
    print("wrote", HERE / name)


def main() -> None:
    trained = entropyflow.analyze(str(SAMPLES / "digits_vgg.pt"), hash_files=False)
    seeds = [entropyflow.analyze("sample:digits_vgg", random_init=True, seed=s) for s in range(5)]
    pair = [
        Panel.of("digits_vgg, trained (97.5 % test accuracy)", trained),
        Panel.of("digits_vgg, random init (5 seeds)", seeds),
    ]
    write(
        "fig1_digits_vgg_trained_vs_random.png",
        entropy_figure(
            pair, PlotOptions(title="Figure 1 style: bundled VGG-style CNN, trained vs random initialisation")
        ),
    )
    write("profile_digits_vgg_trained_vs_random.png", profile_figure(pair))

    vgg16 = [entropyflow.analyze("torchvision:vgg16", random_init=True, seed=s) for s in range(3)]
    write(
        "fig1_vgg16_random_init.png",
        entropy_figure(
            [Panel.of("torchvision:vgg16, random init (3 seeds)", vgg16)],
            PlotOptions(title="Figure 1 style: VGG16 at random initialisation (13 conv, 3 dense)"),
        ),
    )

    resnet = entropyflow.analyze("timm:resnet50", random_init=True, seed=0)
    write(
        "fig8_resnet50_random_init.png",
        entropy_figure(
            [Panel.of("timm:resnet50, random init", resnet)],
            PlotOptions(title="Figure 8 style: ResNet-50 (timm) at random initialisation, 53 conv + 1 dense"),
        ),
    )
    write("profile_resnet50_random_init.png", profile_figure([Panel.of("timm:resnet50, random init", resnet)]))

    spectral = [
        Panel.of(
            "digits_resnet, trained",
            entropyflow.analyze(str(SAMPLES / "digits_resnet.pt"), hash_files=False, estimator="spectral"),
        ),
        Panel.of(
            "random init, 5 seeds",
            [
                entropyflow.analyze("sample:digits_resnet", random_init=True, seed=s, estimator="spectral")
                for s in range(5)
            ],
        ),
    ]
    write(
        "spectral_digits_resnet_trained_vs_random.png",
        entropy_figure(
            spectral,
            PlotOptions(
                title="Spectral estimator: bundled residual CNN (99.7 % test accuracy) vs random initialisation"
            ),
        ),
    )

    unet = entropyflow.analyze(str(SAMPLES / "digits_unet.pt"), hash_files=False)
    write(
        "fig9_digits_unet.png",
        entropy_figure(
            [Panel.of("digits_unet, trained (test IoU 0.80)", unet)],
            PlotOptions(labels="names", title="Figure 9 style: bundled U-Net (up-convolutions are exact)"),
        ),
    )


if __name__ == "__main__":
    main()
