"""Size of the prepare image's Python dependencies, installed as the Lambda image would get them.

Installs functions/prepare/requirements.txt for python3.12 / manylinux x86_64 into a temporary
folder (binary wheels only, as in the image) and prints MiB per top-level package and in total.
Usage: python -m benchmarks.image_dependencies
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent.parent / "functions" / "prepare" / "requirements.txt"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ragtune-image-") as target:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                target,
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "manylinux_2_28_x86_64",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                "--only-binary=:all:",
                "-r",
                str(REQUIREMENTS),
            ],
            check=True,
        )
        sizes: Counter[str] = Counter()
        for path in Path(target).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                sizes[path.relative_to(target).parts[0]] += path.stat().st_size
    mib = 2**20
    for name, size in sizes.most_common(8):
        print(f"{name:<32} {size / mib:8.1f} MiB")
    print(f"total_dependencies_mib={sum(sizes.values()) / mib:.1f} (zip limit 250 MB = 238.4 MiB)")


if __name__ == "__main__":
    main()
