"""timeloom vs torch.nn.GRU: `python benchmarks/bench_gru.py [bench_rnn.py options]`."""
import sys

from bench_rnn import main

if __name__ == "__main__":
    sys.exit(main(["--cell", "gru", *sys.argv[1:]]))
