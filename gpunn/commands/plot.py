"""plot.py
~~~~~~~~~~

``gpunn plot RUN``: the book's figures of a run, into its folder: the
accuracies and cost per epoch, each layer's gradient norms (where the
run logged them), the misclassified test digits, and each conv layer's
filters.
"""

import os

import gpunn
from gpunn.compute import backend
from gpunn.commands import common
from gpunn.run_folder import RunFolder


def add_parser(subparsers):
    c = subparsers.add_parser("plot", help="the book's figures of a run")
    c.add_argument("run", metavar="RUN", help="a run's folder")
    common.backend_options(c)
    c.set_defaults(command=run)


def run(args):
    from gpunn import plots, saving
    common.use(args)
    folder = args.run
    run_folder = RunFolder(folder)
    records = run_folder.records()
    written = [plots.plot_history(records, os.path.join(folder, "accuracy_cost.png"))]
    if any("gradient_norms" in r for r in records):
        written.append(plots.plot_gradient_norms(
            records, os.path.join(folder, "gradient_norms.png")))
    saved = run_folder.saved_network()
    if saved is None:
        raise gpunn.ConfigError("{}: no network.npz or network.json (a run "
                                "of chapters 1 and 3 saves its network at the "
                                "end)".format(folder))
    net, _ = common.load_network(saved)
    _, _, (x, y) = gpunn.load_data()
    wrong = backend.to_numpy(net.predict(x) != backend.asarray(y, dtype="int32",
                                                               like=x))
    x, y = backend.to_numpy(x), backend.to_numpy(y)
    predictions = backend.to_numpy(net.predict(x[wrong]))
    written.append(plots.plot_errors(x[wrong], y[wrong], predictions,
                                     os.path.join(folder, "errors.png")))
    for j, layer in enumerate(getattr(net, "layers", [])):
        if saving.layer_spec(layer)["type"] == "ConvPoolLayer":
            written.append(plots.plot_filters(
                backend.to_numpy(layer.w),
                os.path.join(folder, "filters_layer{}.png".format(j)),
                title="layer {} filters".format(j)))
    for path in written:
        print("Wrote {}".format(path))
    return 0
