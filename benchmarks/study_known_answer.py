"""The known-answer study, taken by simulated raters: do the study's statistics find that CAM
lets people predict a model that learned a planted shortcut, and find nothing when the raters
ignore the maps?

    python -m trainers.fit --preset quick --plant-mark cat:0.1 --run-dir runs/shortcut-cat-p10
    python -m cifar_xai.study create --model runs/shortcut-cat-p10/model.keras --stamp-marks \\
        --conditions cam --out studies/planted-mark
    python -m benchmarks.study_known_answer --study studies/planted-mark [--raters 12]

Map readers answer the class whose CAM peaks on the mark, when one does, else the class they
see; photo readers always answer the class they see (`cifar_xai/study/simulate.py`). Their
answers are not written to the study.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cifar_xai.cli import OneLineParser, positive_int
from cifar_xai.errors import UserError, run_cli


def parse_args(argv: Sequence[str] | None):
    parser = OneLineParser(prog="python -m benchmarks.study_known_answer", description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/planted-mark", help="a study made with --stamp-marks")
    parser.add_argument("--raters", type=positive_int, default=12, help="simulated raters of each kind (default 12)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np

    from cifar_xai.study.design import CONTROL, load_design
    from cifar_xai.study.materials import load_maps
    from cifar_xai.study.simulate import peaks_on_mark, simulated_answers
    from cifar_xai.study.statistics import results, summary_lines

    design = load_design(args.study)
    maps = load_maps(args.study)
    methods = [c for c in design.conditions if c != CONTROL]
    if not any(t.mark >= 0 for t in design.trials):
        raise UserError(f"{args.study} has no planted marks; make the known-answer study with "
                        "python -m cifar_xai.study create --stamp-marks (see this benchmark's doc)")
    if not methods or not maps:
        raise UserError(f"{args.study} has no explanation condition with rendered maps; create it with "
                        "--conditions cam")
    print(f"study {args.study}: {len(design.trials)} images ({sum(t.mark >= 0 for t in design.trials)} marked), "
          f"{sum(t.correct for t in design.trials)} the model "
          f"gets right; conditions {', '.join(design.conditions)}")
    for method in methods:
        lit = [any(peaks_on_mark(maps[f'{t.trial}/{method}'][k], t.mark) for k in range(len(t.choices)))
               for t in design.trials]
        on_prediction = [peaks_on_mark(maps[f'{t.trial}/{method}'][t.choices.index(t.predicted)], t.mark)
                         for t in design.trials]
        on_mistakes = np.mean([o for o, t in zip(on_prediction, design.trials, strict=True) if not t.correct])
        print(f"{method}: a choice's map peaks on the mark in {np.mean(lit):.0%} of the images; the predicted class's "
              f"map does in {np.mean(on_prediction):.0%} ({on_mistakes:.0%} of the model's mistakes)")
    for kind, reads_maps in (("map readers", True), ("photo readers (ignore the maps)", False)):
        found = results(design, simulated_answers(design, maps, args.raters, reads_maps, seed=args.seed), maps,
                        seed=args.seed)
        print(f"\n{args.raters} simulated {kind}")
        print("\n".join(line for line in summary_lines(found) if not line.startswith("agreement")))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
