"""timeloom vs torch.nn.LSTM: `python benchmarks/bench_lstm.py [bench_rnn.py options]`."""
import sys

from bench_rnn import main

if __name__ == "__main__":
    sys.exit(main(["--cell", "lstm", *sys.argv[1:]]))
