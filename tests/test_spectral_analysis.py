"""--estimator spectral end to end: values against independent recomputation from explicit
matrices, the report files, the CLI, recommend, and the numerically guarded fast routes."""

import json

import numpy as np
import pytest
import torch
from test_spectral import circular_matrix, sum_log_sv

import entropyflow
from entropyflow.estimate import spectral as S
from entropyflow.recommend import load_config, recommend, save_config
from entropyflow.report import read_analysis, write_report
from entropyflow.report.outdir import check_writable
from entropyflow.samples import samples_dir


@pytest.fixture(scope="module")
def vgg():
    return entropyflow.analyze(str(samples_dir() / "digits_vgg.pt"), estimator="spectral")


@pytest.fixture(scope="module")
def weights():
    return torch.load(samples_dir() / "digits_vgg.pt", weights_only=True)["state_dict"]


def test_conv_layer_against_explicit_circular_matrices(vgg, weights):
    """features.0: 1→16 channels, 3x3, 'same', on the 8x8 input grid."""
    w = weights["features.0.weight"].double().numpy()
    A, n = circular_matrix(w, (8, 8), (1, 1), (1, 1), (1, 1), 1)
    layer = vgg.layer("features.0")
    expected = [sum_log_sv(A[f * n : (f + 1) * n]) for f in range(16)]
    np.testing.assert_allclose(layer.totals, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(layer.per_position, np.array(expected) / 64, rtol=0, atol=1e-11)
    assert layer.joint == pytest.approx(sum_log_sv(A), abs=1e-9)  # 1024x64: 64 singular values
    assert layer.exact is False and "zero padding" in layer.reason
    assert layer.c11.tolist() == w[:, 0, 0, 0].tolist()


def test_second_pool_stage_conv(vgg, weights):
    """features.5: 16→32 channels on the 4x4 grid after the first max-pool."""
    w = weights["features.5.weight"].double().numpy()
    A, n = circular_matrix(w, (4, 4), (1, 1), (1, 1), (1, 1), 1)
    layer = vgg.layer("features.5")
    np.testing.assert_allclose(layer.totals, [sum_log_sv(A[f * n : (f + 1) * n]) for f in range(32)], atol=1e-9)
    assert layer.joint == pytest.approx(sum_log_sv(A), abs=1e-9)


def test_dense_layers_are_log_singular_values(vgg, weights):
    for name in ("classifier.1", "classifier.3"):
        w = weights[f"{name}.weight"].double().numpy()
        sv = np.linalg.svd(w, compute_uv=False)
        layer = vgg.layer(name)
        np.testing.assert_allclose(layer.per_position, np.log(sv), rtol=0, atol=1e-12)
        assert layer.filters == min(w.shape) and layer.logdet == pytest.approx(np.log(sv).sum(), abs=1e-11)
        assert layer.exact is True and layer.joint == pytest.approx(
            np.log(sv).sum(), abs=1e-11
        )  # one vector per sample
    assert vgg.estimator == "spectral"


def test_report_files_record_the_estimator(vgg, tmp_path):
    out = check_writable(tmp_path / "rep")
    write_report(vgg, out)
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["estimator"]["name"] == "spectral" and "circular" in doc["estimator"]["conventions"]["conv"]
    back = read_analysis(out)
    assert back.estimator == "spectral"
    assert [layer.joint for layer in back.layers] == pytest.approx([layer.joint for layer in vgg.layers], abs=0)
    header, first = (out / "layers.csv").read_text().splitlines()[:2]
    cols = header.split(",")
    assert float(first.split(",")[cols.index("joint")]) == vgg.layers[0].joint
    filters = (out / "filters.csv").read_text().splitlines()
    assert sum(1 for r in filters if ",classifier.1," in r) == 64  # one row per singular direction


def test_cli_spectral(cli, tmp_path):
    r = cli("analyze", "sample:digits_unet", "--estimator", "spectral", "-o", tmp_path / "o", "--no-plot", "--no-html")
    assert r.exit_code == 0, r.stderr
    assert "joint" in r.stdout and "conv_transpose2d" in r.stdout and "spectral" in r.stdout
    r = cli("analyze", "--estimator", "spectral", "--channel-rule", "mean", "-o", tmp_path / "x")
    assert r.exit_code == 2 and "applies to the paper estimator only" in r.stderr


def test_transposed_conv_in_a_model_matches_the_adjoint():
    a = entropyflow.analyze(str(samples_dir() / "digits_unet.pt"), estimator="spectral")
    w = torch.load(samples_dir() / "digits_unet.pt", weights_only=True)["state_dict"]["up2.weight"].double().numpy()
    layer = a.layer("up2")  # ConvTranspose2d(32→16, 2, stride 2): 2x2 → 4x4
    A, n = circular_matrix(w, (4, 4), (2, 2), (1, 1), (0, 0), 1)  # the conv storing the same weight, on the 4x4 grid
    np.testing.assert_allclose(layer.totals, [sum_log_sv(A.T[:, f * n : (f + 1) * n]) for f in range(32)], atol=1e-9)
    read = A[:, np.abs(A).sum(0) > 0]
    assert layer.joint == pytest.approx(sum_log_sv(read), abs=1e-9)


def test_untraced_spectral_uses_the_large_grid_limit():
    a = entropyflow.analyze(str(samples_dir() / "digits_vgg.pt"), estimator="spectral", trace=False)
    layer = a.layer("features.0")
    assert (
        layer.totals is None and layer.joint is None and layer.exact is None and "32x32 circular grid" in layer.reason
    )
    w = torch.load(samples_dir() / "digits_vgg.pt", weights_only=True)["state_dict"]["features.0.weight"].double()
    k = torch.fft.fft2(w[:, 0], s=(32, 32))
    np.testing.assert_allclose(layer.per_position, torch.log(k.abs()).mean((1, 2)).numpy(), atol=1e-12)


def test_recommend_from_a_spectral_analysis(vgg, tmp_path):
    cfg = recommend(vgg)
    assert cfg.estimator == "spectral" and [layer.name for layer in cfg.layers] == ["features.0"]
    assert load_config(save_config(cfg, tmp_path / "l.yaml")).estimator == "spectral"


def test_zero_frequency_response_falls_back_to_the_exact_route():
    """A filter [[1, −1]] has σ(ω) = 0 on the ω_w = 0 column: the autocorrelation route cannot
    resolve that (rounding is relative to ‖k‖²), the guarded fallback gives the exact −∞."""
    w = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    w[0, 0, 0] = torch.tensor([1.0, -1.0])
    w[1, 0, 0] = torch.tensor([1.0, 0.5])
    plan = S.circular_plan(w, (4, 6), (1, 1), (1, 1))
    totals = S.filter_log_spectrum(plan)
    assert torch.isneginf(totals[0])
    expected = float(torch.log(torch.fft.fft2(w[1, 0], s=(4, 6)).abs()).sum())
    assert float(totals[1]) == pytest.approx(expected, abs=1e-12)
    # a nearly-zero response (σ² ~ 1e-14‖k‖²) is also recomputed, and matches the direct |K̂|² route
    w[0, 0, 0] = torch.tensor([1.0, -1.0 + 1e-7])
    plan = S.circular_plan(w, (4, 6), (1, 1), (1, 1))
    assert torch.allclose(S.filter_log_spectrum(plan), S._filter_log_spectrum_direct(plan, 1 << 20), rtol=0, atol=1e-9)


def test_dense_gram_route_and_its_svd_fallback():
    g = torch.Generator().manual_seed(1)
    wide = torch.randn(40, 300, generator=g, dtype=torch.float64)  # well conditioned: the Gram route
    np.testing.assert_allclose(
        S.dense_log_singular_values(wide).numpy(),
        np.log(np.linalg.svd(wide.numpy(), compute_uv=False)),
        rtol=0,
        atol=1e-12,
    )
    ill = torch.randn(30, 30, generator=g, dtype=torch.float64)
    ill[:, 0] = ill[:, 1] + 1e-9 * torch.randn(30, generator=g, dtype=torch.float64)  # σ_min/σ_max ~ 1e-10
    exact = np.log(np.linalg.svd(ill.numpy(), compute_uv=False))
    got = S.dense_log_singular_values(ill).numpy()
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5)  # SVD: σ_min to ~ε·σ_max/σ_min ≈ 1e-6 relative
    gram = 0.5 * np.log(np.abs(np.linalg.eigvalsh(ill.numpy() @ ill.numpy().T)))[::-1]
    assert abs(gram[-1] - exact[-1]) > 0.5  # what the Gram route would have printed: why it is not used here
    batch = torch.stack([ill, wide[:30, :30]])  # one of each in a batch: each takes its own route
    np.testing.assert_allclose(S.dense_log_singular_values(batch)[0].numpy(), got, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has no GPU)")
def test_cuda_equals_cpu():
    torch.manual_seed(0)
    import torchvision

    m = torchvision.models.resnet18().eval()
    cpu = entropyflow.analyze(m, input_size=(3, 64, 64), estimator="spectral", device="cpu")
    gpu = entropyflow.analyze(m, input_size=(3, 64, 64), estimator="spectral", device="cuda")
    for a, b in zip(cpu.layers, gpu.layers, strict=True):
        np.testing.assert_allclose(a.per_position, b.per_position, rtol=0, atol=1e-9)
        assert a.joint == pytest.approx(b.joint, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("stride", [1, 2])
def test_circular_padding_is_exact_against_the_real_layer(stride):
    """A Conv2d with padding_mode='circular' IS the circular operator: its matrix, built by running
    the real module on basis images, has exactly the singular values the estimator reports."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, stride=stride, padding=1, padding_mode="circular", bias=False).double()
    a = entropyflow.analyze(conv, input_size=(2, 6, 6), estimator="spectral")
    layer = a.layers[0]
    basis = torch.eye(72, dtype=torch.float64).reshape(72, 2, 6, 6)
    with torch.no_grad():
        A = conv(basis).reshape(72, -1).T.numpy()  # (3·n_out, 72)
    n = A.shape[0] // 3
    assert layer.exact is True and layer.reason == "" and n == (6 // stride) ** 2
    np.testing.assert_allclose(layer.totals, [sum_log_sv(A[f * n : (f + 1) * n]) for f in range(3)], atol=1e-10)
    assert layer.joint == pytest.approx(sum_log_sv(A), abs=1e-10)
