"""figure.py
~~~~~~~~~~~~

``gpunn figure NAME``: one of the book's figure scripts that train
networks (gpunn.figures), with the script's settings unless --quick,
--epochs or --seed change them; OUT/NAME.json holds the run's data and
OUT/NAME.png draws it as the book did.  ``--replot`` draws the PNG
again from the JSON, training nothing.
"""

import os
import time

import gpunn
from gpunn import figures  # the names and settings; as light as common's
from gpunn.commands import common


def add_parser(subparsers):
    c = subparsers.add_parser(
        "figure", help="the book's figures that train networks",
        description="Train the networks of one of the book's figure scripts "
        "(its fig/ folder) with the script's settings, and write OUT/NAME.json "
        "(the data) and OUT/NAME.png (drawn as the book's figure).")
    c.add_argument("name", metavar="NAME", help="the figure: one of " +
                   ", ".join(figures.FIGURES))
    c.add_argument("--quick", action="store_true",
                   help="a tiny run (few epochs, few images): a check, not "
                   "the book's figure")
    c.add_argument("--epochs", type=int,
                   help="epochs per network (default: the book's; not for "
                   "more_data, which trains 1,500,000 / size epochs)")
    c.add_argument("--eta", type=float,
                   help="learning rate (default: the book's; not for "
                   "multiple_eta)")
    c.add_argument("--lmbda", type=float,
                   help="L2 regularization (default: the book's; not for "
                   "more_data); overfitting --lmbda 0.1 is chapter 3's "
                   "regularized run")
    c.add_argument("--seed", type=int,
                   help="gpunn's seed (default 12345678, the book's scripts')")
    c.add_argument("--out", metavar="DIR",
                   help="where NAME.json and NAME.png go (default "
                   "runs/figure-NAME)")
    c.add_argument("--replot", action="store_true",
                   help="train nothing: draw OUT/NAME.png again from "
                   "OUT/NAME.json")
    c.add_argument("--verbose", action="store_true",
                   help="print network2.SGD's lines for every epoch, as the "
                   "book's scripts do")
    common.backend_options(c, dtype_default="float64, as the book's NumPy")
    c.set_defaults(command=run)


def run(args):
    figures.figure(args.name)  # an unknown name, before anything else
    folder = figures.FigureFolder(
        args.out or os.path.join("runs", "figure-" + args.name), args.name)
    _require_matplotlib()
    if args.replot:
        print("Wrote {}".format(folder.draw(folder.read())))
        return 0
    settings = figures.settings(args.name, args.quick, args.epochs,
                                args.seed, args.eta, args.lmbda)
    folder.make()
    # float64 unless --dtype says otherwise ($GPUNN_DTYPE does not): the
    # book's network2 ran on NumPy's float64, and in float32 a sigmoid
    # saturates to exactly 1 near z = 17 (not 37), which makes the cross-
    # entropy on the test data infinite within 100 epochs of overfitting.
    args.dtype = args.dtype or "float64"
    common.use(args)

    def say(line):
        print("{}: {}".format(args.name, line), flush=True)

    say("the book's {}{} on {} ({}), seed {}".format(
        figures.FIGURES[args.name].script,
        ", --quick" if args.quick else "", gpunn.backend.name(),
        gpunn.backend.floatX.name, settings["seed"]))
    start = time.perf_counter()
    results = figures.run(args.name, settings, say=say, verbose=args.verbose)
    record = figures.record(args.name, settings, args.quick, results,
                            time.perf_counter() - start, common.device())
    for path in folder.write(record):
        print("Wrote {}".format(path))
    return 0


def _require_matplotlib():
    """Refuse now, not after training, where the PNG cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise gpunn.ConfigError("gpunn figure draws with matplotlib: pip "
                                "install 'gpunn[bench]'") from None
