"""network.py
~~~~~~~~~~~~~

Chapter 1's program: a network of sigmoid neurons with the quadratic cost,
weights and biases drawn from N(0, 1), trained by mini-batch stochastic
gradient descent with backpropagation.

It is network2's ``Network`` with chapter 1's choices (``QuadraticCost``,
``large_weight_initializer``) and chapter 1's methods and printout; the
layers and backprop code are the ones all three chapters share.
"""

from gpunn import network2
from gpunn.costs import QuadraticCost


class Network(network2.Network):

    def __init__(self, sizes):
        """``sizes``: neurons per layer, input layer first, e.g. [784, 30, 10].
        Weights and biases start as N(0, 1) draws from the seeded generator."""
        super().__init__(sizes, cost=QuadraticCost)
        self.large_weight_initializer()

    def SGD(self, training_data, epochs, mini_batch_size, eta, test_data=None):
        """Train with mini-batch stochastic gradient descent.  If
        ``test_data`` is given, print the number of test images classified
        correctly after each epoch; returns those counts."""
        results = []
        for j in self._train(training_data, epochs, mini_batch_size, eta, 0.0):
            if test_data:
                results.append(self.evaluate(test_data))
                print("Epoch {0}: {1} / {2}".format(j, results[-1],
                                                    len(test_data)))
            else:
                print("Epoch {0} complete".format(j))
        return results

    def update_mini_batch(self, mini_batch, eta):
        """One step of gradient descent on ``mini_batch``, a list of (x, y)."""
        super().update_mini_batch(mini_batch, eta, 0.0, 1)

    def evaluate(self, test_data):
        """Return the number of test inputs classified correctly."""
        return self.accuracy(test_data)

    def cost_derivative(self, output_activations, y):
        """Return dC_x/da for the output activations (quadratic cost)."""
        return output_activations - y
