"""How much memory decoding a user's image takes: the files that once amplified a small upload
into a gigabyte, each decoded in a fresh process, and several decoded at once.

    python -m benchmarks.decode_memory [--side 4990] [--at-once 8] [--json FILE]

Each kind is written to a temporary folder, then decoded by `cifar_xai.images.load_image` (what
the Explanations tab's uploads and the explain CLI both use) in a new Python process, which
reports its peak resident memory above what it held before decoding (Linux's VmHWM,
reset just before). The kinds:
a 16-bit greyscale PNG, a palette PNG with transparency, a 16-bit RGBA PNG, an RGBA PNG and a
JPEG, each `--side` pixels square (4,990: just under the 25-megapixel cap), and the 6,300-pixel
16-bit PNG of the security review (over the cap: refused from its header). `--at-once` threads
then decode the 16-bit PNG together in one process (at most `MAX_DECODES` decode at a time).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

# Run in the child: decode the files named on the command line, N at once, and print the figures.
_CHILD = r"""
import json, sys, threading, time
from pathlib import Path
import PIL.Image, PIL.PngImagePlugin, PIL.JpegImagePlugin
from cifar_xai.images import load_image
from cifar_xai.errors import UserError
def status(field):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])
paths, at_once = sys.argv[1:-1], int(sys.argv[-1])
Path("/proc/self/clear_refs").write_text("5")   # the peak (VmHWM) restarts from here
before = status("VmRSS:")
outcomes = []
def decode(path):
    start = time.perf_counter()
    try:
        load_image(path)
        outcomes.append(("decoded", time.perf_counter() - start))
    except UserError as err:
        outcomes.append((str(err).split(" ", 1)[1][:90], time.perf_counter() - start))
threads = [threading.Thread(target=decode, args=(p,)) for p in paths for _ in range(at_once)]
for t in threads: t.start()
for t in threads: t.join()
after = status("VmHWM:")
print(json.dumps({"extra_mb": (after - before) / 1024, "outcomes": outcomes}))
"""


def _png(path: Path, side: int, bit_depth: int, colour_type: int, channels: int) -> None:
    """A PNG of zeros written by hand (Pillow cannot write 16-bit RGBA): tiny on disk, `side`^2 pixels."""
    row = b"\x00" + bytes(side * channels * bit_depth // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def write_kinds(folder: Path, side: int) -> dict[str, Path]:
    """The amplifying files, `side` pixels square (the review's 6,300 for the first)."""
    from PIL import Image

    kinds = {}
    kinds["grey16 6300 (review)"] = folder / "grey16-6300.png"
    _png(kinds["grey16 6300 (review)"], 6300, 16, 0, 1)
    kinds["grey16"] = folder / "grey16.png"
    _png(kinds["grey16"], side, 16, 0, 1)
    kinds["rgba16"] = folder / "rgba16.png"
    _png(kinds["rgba16"], side, 16, 6, 4)
    kinds["rgba8"] = folder / "rgba8.png"
    _png(kinds["rgba8"], side, 8, 6, 4)
    palette = Image.new("P", (side, side))
    palette.putpalette([0, 0, 0, 255, 0, 0] * 128)
    kinds["palette + transparency"] = folder / "palette.png"
    palette.save(kinds["palette + transparency"], transparency=0, optimize=True)
    kinds["jpeg"] = folder / "photo.jpg"
    Image.new("RGB", (side, side), (120, 80, 40)).save(kinds["jpeg"], quality=90)
    return kinds


def measure(paths: Sequence[Path], at_once: int = 1) -> dict:
    """Decode `paths` (each `at_once` times, in threads) in a fresh process: its peak extra memory."""
    root = Path(__file__).resolve().parents[1]
    found = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths), str(at_once)], cwd=root,
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    from cifar_xai.cli import OneLineParser, output_file, positive_int, write_json

    parser = OneLineParser(prog="python -m benchmarks.decode_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=positive_int, default=4990, help="side of each kind's square image (px)")
    parser.add_argument("--at-once", type=positive_int, default=8, help="decodes started together at the end")
    parser.add_argument("--json", type=output_file, metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    from cifar_xai.images import MAX_DECODES, MAX_PIXELS
    from cifar_xai.shipping import machine_description

    print(machine_description())
    print(f"cap {MAX_PIXELS:,} pixels, at most {MAX_DECODES} decodes at once\n")
    result = {"side": args.side, "kinds": {}}
    with tempfile.TemporaryDirectory() as folder:
        kinds = write_kinds(Path(folder), args.side)
        print(f"{'file':<24} {'on disk':>10} {'peak extra':>11}  outcome")
        for name, path in kinds.items():
            found = measure([path])
            outcome = found["outcomes"][0][0]
            result["kinds"][name] = {"bytes": path.stat().st_size, "extra_mb": found["extra_mb"], "outcome": outcome}
            print(f"{name:<24} {path.stat().st_size / 1024:>7.0f} KB {found['extra_mb']:>8.0f} MB  {outcome}")
        together = measure([kinds["grey16"]], args.at_once)
        waited = max(seconds for _, seconds in together["outcomes"])
        result["at_once"] = {"count": args.at_once, "extra_mb": together["extra_mb"], "slowest_s": waited,
                             "outcomes": sorted({o for o, _ in together["outcomes"]})}
        print(f"\n{args.at_once} x grey16 at once: peak extra {together['extra_mb']:.0f} MB, the last done after "
              f"{waited:.1f} s ({', '.join(result['at_once']['outcomes'])})")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from cifar_xai.errors import run_cli

    sys.exit(run_cli(main))
