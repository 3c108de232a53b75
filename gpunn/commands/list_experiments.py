"""list_experiments.py
~~~~~~~~~~~~~~~~~~~~~~~

``gpunn list``: the chapter-6 experiments of the book's conv.py, each
with its layers, hyperparameters and the book's test accuracy, and the
networks of chapters 1 and 3.
"""

import gpunn


def add_parser(subparsers):
    c = subparsers.add_parser("list", help="the book's chapter-6 experiments")
    c.set_defaults(command=run)


def run(args):
    from gpunn import experiments
    gpunn.use("numpy")  # only the layers' shapes are needed
    for name in experiments.CONV_PY:
        e = experiments.experiment(name)
        net = e.network(10)
        print("{}: {}".format(name, e.description))
        print("    layers: {}".format(" -> ".join(_short(l) for l in net.layers)))
        print("    eta {}, lmbda {}, {} epochs, mini-batch 10{}; book's test "
              "accuracy: {}".format(
                  e.eta, e.lmbda, e.epochs,
                  ", expanded training data" if e.expanded_data else "",
                  "{:.2f}%".format(e.book_accuracy) if e.book_accuracy else "–"))
    for name, book in experiments.NETWORKS.items():
        print("{}: {}, eta {}{}{}, {} epochs; book: {:.2f}%".format(
            name, book.description, book.eta,
            ", lmbda {}".format(book.lmbda) if book.lmbda else "",
            # chapter 3 has a choice of initializer; chapter 1 has one
            ", {} initializer".format(book.init) if name == "network2" else "",
            book.epochs, book.book_accuracy))


def _short(layer):
    """A layer in a few words: "conv 20x5x5 sigmoid pool 2x2", "100 ReLU"."""
    from gpunn import saving
    spec = saving.layer_spec(layer)
    if spec["type"] == "ConvPoolLayer":
        return "conv {}x{}x{} {} pool {}x{}".format(
            spec["filter_shape"][0], *spec["filter_shape"][2:],
            spec["activation_fn"], *spec["poolsize"])
    dropout = " dropout {}".format(spec["p_dropout"]) if spec["p_dropout"] else ""
    if spec["type"] == "SoftmaxLayer":
        return "softmax {}{}".format(spec["n_out"], dropout)
    return "{} {}{}".format(spec["n_out"], spec["activation_fn"], dropout)
