"""ensemble.py
~~~~~~~~~~~~~~

``gpunn ensemble MODEL_FILE...``: the book's vote of several chapter-6
networks on the test data (gpunn.ensemble), and the test images the
vote gets wrong.
"""

import gpunn
from gpunn.compute import backend
from gpunn.commands import common


def add_parser(subparsers):
    c = subparsers.add_parser("ensemble", help="the book's vote of networks")
    c.add_argument("model_files", nargs="+", metavar="MODEL_FILE")
    c.add_argument("--png", help="draw the misclassified test digits here")
    c.add_argument("--list", metavar="FILE",
                   help="write every misclassified test image here, a line "
                   "each: its index, true digit and the vote")
    common.backend_options(c)
    c.set_defaults(command=run)


def run(args):
    from gpunn import saving
    from gpunn.ensemble import ensemble
    common.use(args)
    nets = [saving.load(path)[0] for path in args.model_files]
    _, _, test = gpunn.load_data()
    accuracy, error_locations, erroneous_predictions = ensemble(nets, test)
    print("Accuracy is {:.2%}".format(accuracy))
    shown = 10
    print("Misclassified test images ({}){}: {}{}".format(
        len(error_locations),
        ", the first {} as index:vote".format(shown)
        if len(error_locations) > shown else ", as index:vote",
        " ".join("{}:{}".format(j, p) for j, p in zip(
            error_locations[:shown], erroneous_predictions[:shown])),
        " ..." if len(error_locations) > shown else ""))
    if args.list:
        labels = backend.to_numpy(test[1])
        with open(args.list, "w") as f:
            f.write("index true vote\n")
            for j, p in zip(error_locations, erroneous_predictions):
                f.write("{} {} {}\n".format(j, labels[j], p))
        print("Wrote all of them to {}".format(args.list))
    elif len(error_locations) > shown:
        print("(--list FILE writes all of them)")
    if args.png:
        from gpunn import plots
        x, y = (backend.to_numpy(a) for a in test)
        plots.plot_errors(x[error_locations], y[error_locations],
                          erroneous_predictions, args.png)
        print("Wrote {}".format(args.png))
    return 0
