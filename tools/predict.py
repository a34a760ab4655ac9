"""`python tools/predict.py -m EXPORT_DIR -i IMAGE [IMAGE|FOLDER ...] [--output DIR] [--json]`

Predictions from a model exported with tools/export.py, through Paddle Inference (or ONNX Runtime with
`--backend onnx`), the task read off the export:

* classification: top-k classes with their names (`--topk K`);
* segmentation: a pseudo-colour mask per image, written to `<output>/<image stem>.png`, and the classes in it;
* detection: boxes with score >= `--threshold` (default: the export's draw_threshold), drawn on the image
  and written to `<output>/<image stem>.png`.

`--output` defaults to output/predict. One line per image, or one JSON document with `--json`; bad input
(not an export, a missing deploy file, an unreadable image) prints one `error:` line and exits 2.
Thin wrapper over :func:`paddle_lk.engine.cli.predict_main`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.engine.cli import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main(sys.argv[1:]))
