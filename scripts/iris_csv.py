"""Writes Fisher's iris as a CSV for `weir train` (header row, species as text). The data is the
copy scikit-learn ships inside its package, so nothing is downloaded."""
import pathlib
import sys

from sklearn.datasets import load_iris


def main():
    path = pathlib.Path(sys.argv[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_iris()
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for row, target in zip(data.data, data.target):
        lines.append(",".join(f"{v:g}" for v in row) + f",{data.target_names[target]}")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}: {len(lines) - 1} rows")


if __name__ == "__main__":
    main()
