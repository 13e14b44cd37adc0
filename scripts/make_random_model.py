"""Write a randomly initialised full-size CPnet in upstream weight format (a stand-in until a trained model ships).

Usage: python scripts/make_random_model.py OUT_PATH [--seed N] [--diam-mean D]
"""
import argparse

import torch

from cellpose.net.cpnet import CPnet
from cellpose.net.weights import save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--diam-mean", type=float, default=17.0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    save_weights(CPnet(diam_mean=args.diam_mean), args.out)
    print(f"wrote random CPnet weights to {args.out}")


if __name__ == "__main__":
    main()
