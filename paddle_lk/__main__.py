"""``paddle_lk <command> ...`` (installed as a console script; ``python -m paddle_lk`` works too).

Commands behave exactly like the scripts in ``tools/``: ``train``, ``eval``, ``infer``, ``export``
(``tools/<command>.py``), ``predict`` (``tools/predict.py``), ``convert`` (``tools/convert_torch.py``),
``erf`` (``tools/erf.py``), and ``models`` (the registered models with their published facts).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional, Sequence

from .analysis.cli import main as erf_main
from .convert.cli import main as convert_main
from .engine.cli import MODES, main as engine_main, predict_main
from .errors import closest
from .registry import list_models, model_info
from .utils.log import safe_print

__all__ = ["main", "models_main"]

COMMANDS = {**{m: f"tools/{m}.py" for m in MODES}, "predict": "tools/predict.py",
            "convert": "tools/convert_torch.py", "erf": "tools/erf.py", "models": "list the models"}


def models_main(argv: Optional[Sequence[str]] = None) -> int:
    """``paddle_lk models [PATTERN] [--pretrained] [--family F] [--json]``: the registered models with
    their family, published parameters, input size, mean/std, published top-1 and official weights."""
    p = argparse.ArgumentParser(prog="paddle_lk models", description=models_main.__doc__)
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'van_*' (case-insensitive)")
    p.add_argument("--pretrained", action="store_true", help="only models with official weights")
    p.add_argument("--family", default=None, help="replknet, van, unireplknet, ...")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = p.parse_args(list(argv or []))
    families = sorted({model_info(n)["family"] for n in list_models()})
    if args.family is not None and args.family not in families:
        close = closest(args.family, families, n=1)
        print(f"error: unknown family '{args.family}'" + (f"; did you mean '{close[0]}'?" if close else "")
              + f" (families: {', '.join(families)})", file=sys.stderr)
        return 2
    names = list_models(args.pattern, pretrained=args.pretrained, family=args.family)
    infos = [dict(model_info(n), name=n) for n in names]
    if args.json:
        safe_print(json.dumps(infos, default=list))
        return 0
    rows = [("model", "family", "params (M)", "input", "top-1 @res", "official weights")]
    for i in infos:
        weights = ", ".join(c["file"] for c in i["checkpoints"]) or ("hosted" if i["paddle_url"] else "-")
        rows.append((i["name"], i["family"], f"{i['params_m']:g}" if i["params_m"] else "-",
                     "x".join(map(str, i["input_size"][1:])),
                     f"{i['top1']:.1f} @{i['top1_resolution']}" if i["top1"] else "-", weights))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for r in rows:
        safe_print("  ".join(r[c].ljust(widths[c]) for c in range(5)) + "  " + r[5])
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Dispatch ``paddle_lk <command> [args]``; returns the command's exit code."""
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: paddle_lk <command> [args]\n\ncommands:\n" + "\n".join(f"  {c:<8} {t}" for c, t in COMMANDS.items()))
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in MODES:
        return engine_main(command, rest)
    handlers = {"predict": predict_main, "convert": convert_main, "erf": erf_main, "models": models_main}
    if command not in handlers:
        close = closest(command, list(COMMANDS), n=1)
        print(f"error: unknown command '{command}'" + (f"; did you mean '{close[0]}'?" if close else "")
              + f" (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return int(handlers[command](rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
