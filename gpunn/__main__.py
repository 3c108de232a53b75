"""python -m gpunn: the gpunn command (see gpunn/commands/).

With no command, ``python -m gpunn [--epochs N --backend B ...]`` is the
main job: ``gpunn train dbl_conv_relu``, chapter 6's ReLU network (two
conv-pool layers, 100 ReLU neurons, softmax; eta 0.03, lmbda 0.1,
mini-batch 10, 60 epochs), printing the book's lines each epoch.
"""

import sys

from gpunn.commands import main

if __name__ == "__main__":
    sys.exit(main())
