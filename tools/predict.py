"""`python tools/predict.py -m EXPORT_DIR -i IMAGE [IMAGE|FOLDER ...] [--topk K] [--backend onnx] [--json]`

Predictions from a model exported with tools/export.py, through Paddle Inference (or ONNX Runtime):
top-k classes with their names. Thin wrapper over :func:`paddle_lk.engine.cli.predict_main`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.engine.cli import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main(sys.argv[1:]))
