"""Network diagrams: one circle per neuron, one line per weight, styles from the actual parameters."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import embedding_principle as ep  # noqa: E402
from embedding_principle import diagrams, plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _edges(net):
    return sum(net.widths[l] * net.widths[l - 1] for l in range(1, net.L + 1))


@pytest.mark.parametrize("widths", [(1, 2, 1), (2, 3, 2, 1), (3, 1, 4, 2)])
def test_one_circle_per_neuron_and_one_line_per_weight(widths):
    net = ep.MLP(widths, "tanh")
    _, ax = plt.subplots()
    diagrams.draw_network(ax, net, net.init(0, 1.0))
    assert len(ax.patches) == sum(widths)
    assert len(ax.lines) == _edges(net)


def test_edge_width_grows_with_weight_and_colour_follows_sign():
    net = ep.MLP((1, 2, 1), "tanh", output_bias=False)
    theta = torch.tensor([0.1, -2.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    _, ax = plt.subplots()
    diagrams.draw_network(ax, net, theta)
    small, large, out_pos, out_zero = ax.lines
    assert large.get_linewidth() > small.get_linewidth()
    colors = plotting.sign_colors()
    assert matplotlib.colors.same_color(small.get_color(), colors["positive"])
    assert matplotlib.colors.same_color(large.get_color(), colors["negative"])
    assert out_zero.get_linestyle() != "-"  # a zero weight is drawn dashed


def test_labels_print_the_actual_numbers():
    net = ep.MLP((1, 1, 1), "tanh", output_bias=False)
    theta = torch.tensor([0.5, 0.25, -1.5], dtype=torch.float64)
    _, ax = plt.subplots()
    diagrams.draw_network(ax, net, theta, edge_labels=True, bias_labels=True)
    texts = {t.get_text() for t in ax.texts}
    assert {"0.5", "-1.5", "b=0.25"} <= texts


def test_embedding_colours_copies_alike_and_null_neurons_grey():
    net = ep.MLP((1, 2, 1), "tanh", output_bias=False)
    T = ep.compose(ep.null(ep.MLP((1, 3, 1), "tanh", output_bias=False), 1, 0.0), ep.splitting(net, 1, 0, 0.3))
    theta = torch.tensor([0.5, -1.0, 0.2, 0.3, 1.5, -2.0], dtype=torch.float64)  # output weights 1.5, -2
    axes = diagrams.draw_embedding(T, theta)
    wide = [p.get_facecolor() for p in axes[1].patches]  # input, 4 hidden, output
    assert wide[1] == wide[3]                      # neuron 0 and its copy (appended at index 2)
    assert wide[1] != wide[2]
    assert matplotlib.colors.same_color(wide[4], "0.75")  # the null neuron
    # output weights (1 - alpha) 1.5, -2, alpha 1.5, 0 for alpha = 0.3
    assert {"1.05", "-2", "0.45", "0"} <= {t.get_text() for t in axes[1].texts}


def test_bad_inputs_are_named():
    net = ep.MLP((1, 2, 1), "tanh")
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match="MLP"):
        diagrams.draw_network(ax, "net")
    with pytest.raises(ValueError, match="edge_labels"):
        diagrams.draw_network(ax, net, edge_labels="all")
    with pytest.raises(ValueError, match="batch"):
        diagrams.draw_network(ax, net, net.init(0, 1.0, runs=2))
    with pytest.raises(ValueError, match="two axes"):
        diagrams.draw_embedding(ep.splitting(net, 1, 0, 0.5), net.init(0, 1.0), axes=[ax])
