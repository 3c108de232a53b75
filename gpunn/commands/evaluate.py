"""evaluate.py
~~~~~~~~~~~~~~

``gpunn evaluate MODEL_FILE``: the validation and test accuracy of a
saved network, of chapter 6 (network.npz) or of chapters 1 and 3
(network.json).
"""

from gpunn.commands import common
from gpunn.commands.common import positive_int


def add_parser(subparsers):
    c = subparsers.add_parser("evaluate", help="accuracy of a saved network")
    c.add_argument("model_file")
    c.add_argument("--eval-limit", type=positive_int, metavar="N")
    common.backend_options(c)
    c.set_defaults(command=run)


def run(args):
    common.use(args)
    net, metadata = common.load_network(args.model_file)
    _, validation, test = common.data(False, None, args.eval_limit)
    if isinstance(net, common.BookNetwork):
        print("{}: a [{}] network of chapters 1 and 3".format(
            args.model_file, ", ".join(map(str, net.net.sizes))))
    else:
        print("{}: {} epochs, trained on {}".format(
            args.model_file, metadata.get("epochs_done", "?"),
            metadata.get("backend", "?")))
    print("Validation accuracy {:.2%}".format(net.accuracy(validation)))
    print("Test accuracy {:.2%}".format(net.accuracy(test)))
    return 0
