"""Regenerate every figure in docs/figures/ (and the README's) from the library, offline.

    python docs/figures/make_figures.py

Uses only the bundled samples and random initialisations (no downloads): the paper's Figure 1
(trained vs random init, with the seeds' band and z-scores), Figure 8 (ResNet-50) and Figure 9
(U-Net) styles, profiles, and a training trajectory of the bundled VGG (checkpoints written by
``sample_models/build.py --checkpoints`` into a temporary folder, not committed).
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import entropyflow
from entropyflow.compare import reference_seeds
from entropyflow.estimate.reference import seed_reference
from entropyflow.report.figures import Panel, PlotOptions, entropy_figure, profile_figure, save_figure
from entropyflow.report.trajectory import trajectory_files
from entropyflow.track import TrackOptions, track

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[1] / "sample_models"


def write(name: str, fig) -> None:
    (HERE / name).write_bytes(save_figure(fig, "png"))
    print("wrote", HERE / name)


def main() -> None:
    trained = entropyflow.analyze(str(SAMPLES / "digits_vgg.pt"), hash_files=False)
    own = trained.model.seed  # the seed it was trained from (its manifest): never among the reference seeds
    seeds = [entropyflow.analyze("sample:digits_vgg", random_init=True, seed=s) for s in reference_seeds(20, own)]
    reference = seed_reference(trained, seeds)
    pair = [
        Panel.of("digits_vgg, trained (97.5 % test accuracy)", trained, reference),
        Panel.of("digits_vgg, random init (20 seeds)", seeds),
    ]
    write(
        "fig1_digits_vgg_trained_vs_random.png",
        entropy_figure(
            pair,
            PlotOptions(
                title="Figure 1 style: bundled VGG-style CNN, trained vs 20 random initialisations (z of each layer "
                "median against the seeds above the boxes)"
            ),
        ),
    )
    write("profile_digits_vgg_trained_vs_random.png", profile_figure(pair))
    for item in reference.layers:
        s = item.stat("median")
        print(f"  {item.name}: z = {s.z:+.2f}, percentile {s.percentile:.0f}, Holm p = {s.p_holm:.3g}")

    spec = importlib.util.spec_from_file_location("sample_build", SAMPLES / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    with tempfile.TemporaryDirectory() as tmp:
        build.checkpoints(Path(tmp) / "ck", epochs=40, every=2)
        traj = track([Path(tmp) / "ck"], Path(tmp) / "out", track_options=TrackOptions(seeds=20))
        files = trajectory_files(traj, "png")
    (HERE / "trajectory_digits_vgg.png").write_bytes(files["trajectory.png"])
    (HERE / "trajectory_layers_digits_vgg.png").write_bytes(files["trajectory-layers.png"])
    print("wrote", HERE / "trajectory_digits_vgg.png", HERE / "trajectory_layers_digits_vgg.png")

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
