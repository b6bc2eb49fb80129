"""timeloom vs torch.nn.RNN (Elman, tanh): `python benchmarks/bench_elman.py [bench_rnn.py options]`."""
import sys

from bench_rnn import main

if __name__ == "__main__":
    sys.exit(main(["--cell", "rnn", *sys.argv[1:]]))
