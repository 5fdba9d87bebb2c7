"""Rebuild every shipped model from the data, then print the numbers their cards quote.

    python -m export.build_all

Deterministic seeds; about 25 minutes for the ELA-CNN and 10 for the two Meso networks on
2 CPU cores. Results can differ in the last digits between machines (TensorFlow's CPU kernels).
"""

from export import evaluate_models, train_ela_cnn, train_meso


def main() -> None:
    train_ela_cnn.main([])
    train_meso.main([])
    evaluate_models.main(["ela-cnn"])
    evaluate_models.main(["mesonet"])


if __name__ == "__main__":
    main()
