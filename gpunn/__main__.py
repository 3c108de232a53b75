"""python -m gpunn: train chapter 6's ReLU network on the active backend.

The network of the book's ``dbl_conv_relu`` with lmbda = 0.1: two
convolution + max-pool layers (20 and 40 filters of 5x5), 100 ReLU
neurons, a softmax layer; eta 0.03, mini-batch 10, 60 epochs by default.
Prints the book's lines each epoch.
"""

import argparse
import os
import sys

import gpunn
from gpunn import backend
from gpunn.experiments import EXPERIMENTS

EXPERIMENT = EXPERIMENTS["dbl_conv_relu"]
MINI_BATCH_SIZE = 10


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %s" % text)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m gpunn", description=__doc__.split("\n\n")[0],
        epilog="Environment: GPUNN_BACKEND and GPUNN_DTYPE set the defaults "
               "of --backend and --dtype; GPUNN_DATA where mnist.pkl.gz is.")
    parser.add_argument("--epochs", type=_positive_int, default=60,
                        help="epochs to train (default 60, as in the book)")
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="numpy, cupy or auto (default: $GPUNN_BACKEND, "
                             "else auto: CuPy if a CUDA GPU is usable)")
    parser.add_argument("--dtype", choices=backend.DTYPES, default=None,
                        help="float32 (default, or $GPUNN_DTYPE) or float64")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the initial weights (default: random)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        metavar="N", help="train on the first N training "
                                          "images only (a quick check)")
    args = parser.parse_args(argv)

    try:
        gpunn.use(args.backend or os.environ.get("GPUNN_BACKEND") or "auto",
                  args.dtype or os.environ.get("GPUNN_DTYPE") or "float32",
                  seed=args.seed)
        training_data, validation_data, test_data = gpunn.load_data()
    except (gpunn.BackendError, gpunn.DataError) as e:
        print("gpunn: error: {}".format(e), file=sys.stderr)
        return 2
    if args.limit is not None:
        training_data = tuple(a[:args.limit] for a in training_data)
    print("Conv + Conv + FC, relu, with regularization {} on {} ({}), {} "
          "training images".format(EXPERIMENT.lmbda, backend.name(),
                                   backend.floatX.name, len(training_data[0])))
    net = EXPERIMENT.network(MINI_BATCH_SIZE)
    net.SGD(training_data, args.epochs, MINI_BATCH_SIZE, EXPERIMENT.eta,
            validation_data, test_data, lmbda=EXPERIMENT.lmbda)
    return 0


if __name__ == "__main__":
    sys.exit(main())
