"""Generation: the greedy engine, pooling of hidden states, the chat template and the prompt tokens."""
