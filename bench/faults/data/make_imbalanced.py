#!/usr/bin/python3
"""Writes breast_cancer_imbalanced.csv for bench/faults/class_imbalance.toml.

scikit-learn's breast cancer table (569 rows: 212 malignant = class 0, 357 benign = class 1) with only the first
12 malignant rows kept: about 30 benign per malignant case. Same layout as the original (data.header = "sklearn":
a first line "n_samples,n_features,class names"), so traindx reads it like the original.

    /usr/bin/python3 bench/faults/data/make_imbalanced.py
"""
import os

SOURCE = "/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv"
KEEP_MALIGNANT = 12


def main():
    with open(SOURCE) as f:
        header = f.readline().rstrip("\n").split(",")
        rows = [line.rstrip("\n") for line in f if line.strip()]
    kept, malignant = [], 0
    for row in rows:
        label = int(float(row.rsplit(",", 1)[1]))
        if label == 0:
            malignant += 1
            if malignant > KEEP_MALIGNANT:
                continue
        kept.append(row)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "breast_cancer_imbalanced.csv")
    with open(out, "w") as f:
        f.write(",".join([str(len(kept))] + header[1:]) + "\n")
        f.write("\n".join(kept) + "\n")
    print(f"wrote {out}: {len(kept)} rows, {min(malignant, KEEP_MALIGNANT)} malignant")


if __name__ == "__main__":
    main()
